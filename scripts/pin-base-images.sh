#!/usr/bin/env bash
# Pins the Dockerfile's base images by digest as well as tag (`image:tag@sha256:...`),
# so that a rebuild pulls the image CI tested, not whatever the tag points at today.
#
#     scripts/pin-base-images.sh           # resolve each FROM's tag, rewrite its digest
#     scripts/pin-base-images.sh --check   # report tags that moved; exit 1 if any did
#
# Each tag is resolved with `docker buildx imagetools inspect` (a registry call; no
# Docker engine needed) and must name a multi-platform index covering linux/amd64 and
# linux/arm64: a single-platform digest would break the other platform's build. Run it
# when bumping a tag or to take a rebuilt base image (security fixes), then rebuild and
# test. DOCKERFILE overrides the file (the deploy tests use a copy).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DOCKERFILE="${DOCKERFILE:-$repo/Dockerfile}"
case "${1:-}" in
    "" | --check) ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

exec python3 - "$@" <<'PY'
import json, os, re, subprocess, sys

dockerfile = os.environ["DOCKERFILE"]
check = sys.argv[1:] == ["--check"]
NEEDED = {("linux", "amd64"), ("linux", "arm64")}
INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
FROM = re.compile(r"^(FROM\s+(?:--\S+\s+)*)(\S+)(.*)$", re.IGNORECASE)


def resolve(image):
    """The index digest the tag names now, or exit with why it will not do."""
    out = subprocess.run(
        ["docker", "buildx", "imagetools", "inspect", image, "--format", "{{json .Manifest}}"],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        sys.exit(f"pin-base-images: cannot resolve {image}: {out.stderr.strip()}")
    manifest = json.loads(out.stdout)
    if manifest.get("mediaType") not in INDEX_TYPES:
        sys.exit(f"pin-base-images: {image} is a single-platform image ({manifest.get('mediaType')}), not an index.")
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]) for m in manifest.get("manifests", []) if "platform" in m}
    if missing := NEEDED - platforms:
        sys.exit(f"pin-base-images: {image} has no image for {sorted('/'.join(p) for p in missing)}.")
    digest = manifest["digest"]
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        sys.exit(f"pin-base-images: {image} resolved to an unexpected digest {digest!r}.")
    return digest


lines, stages, moved = open(dockerfile).read().splitlines(keepends=True), set(), 0
for i, line in enumerate(lines):
    m = FROM.match(line)
    if not m:
        continue
    ref, rest = m.group(2), m.group(3)
    if stage := re.search(r"\bAS\s+(\S+)", rest, re.IGNORECASE):
        stages.add(stage.group(1).lower())
    if ref.lower() in stages or ref == "scratch":
        continue
    image, _, pinned = ref.partition("@")
    if "$" in image:
        sys.exit(f"pin-base-images: {dockerfile}:{i + 1}: {image} uses a build argument; write the tag out.")
    digest = resolve(image)
    if digest == pinned:
        print(f"{image}: {digest} (unchanged)")
        continue
    moved += 1
    print(f"{image}: {pinned or '(not pinned)'} -> {digest}")
    lines[i] = f"{m.group(1)}{image}@{digest}{rest}" + ("\n" if line.endswith("\n") else "")

if check:
    sys.exit(1 if moved else 0)
if moved:
    open(dockerfile, "w").write("".join(lines))
    print(f"pin-base-images: {moved} image(s) re-pinned in {dockerfile}; rebuild and test.")
PY
