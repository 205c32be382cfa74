#!/usr/bin/env bash
# Proves the Dockerfile's multi-arch build without a Docker engine: copies the build
# context exactly as .dockerignore filters it (no .git, no target/: the stage sees no
# repository, as in Docker), runs the build stage's two commands in it
# (scripts/docker-build.sh, the same script the Dockerfile runs), then runs the binary
# for the target under qemu-user and checks that `firetail --version` names the commit.
#
#     scripts/docker-build-stage.sh [arm64|amd64]     # default arm64
#
# A fat-LTO cross build from an empty target/ takes a long while on a small machine,
# so this is not part of scripts/test.sh; run it when the Dockerfile or the build
# changes. Needs root for apt-get (Debian's cross gcc and qemu-user), like the stage.
# Differences from the real stage, all outside the two commands: the build machine's
# Debian, glibc and Rust toolchain instead of the rust image's, ~/.cargo's registry
# instead of the cache mount, and an empty target/ each run.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TARGETARCH="${1:-arm64}"
export FIRETAIL_GIT_COMMIT="${FIRETAIL_GIT_COMMIT:-$(git -C "$repo" rev-parse --short=12 HEAD)}"
case "$TARGETARCH" in
    amd64) qemu=qemu-x86_64 sysroot=/usr/x86_64-linux-gnu machine="x86-64" ;;
    arm64) qemu=qemu-aarch64 sysroot=/usr/aarch64-linux-gnu machine="aarch64" ;;
    *) echo "docker-build-stage.sh: TARGETARCH=$TARGETARCH is not supported." >&2; exit 2 ;;
esac

work="$(mktemp -d /tmp/firetail-docker-stage.XXXXXX)"
context="$work/src"
mkdir -p "$context"
# The copy and its target/ (hundreds of MB) go; the binary stays for a closer look.
trap 'rm -rf "$context"' EXIT
python3 "$repo/deploy/tests/dockerignore.py" "$repo" | tar -C "$repo" --null -T - -cf - | tar -C "$context" -xf -
echo "docker-build-stage.sh: context in $context: $(find "$context" -type f | wc -l) files."
for absent in .git target deploy; do
    if [[ -e "$context/$absent" ]]; then
        echo "docker-build-stage.sh: $absent is in the build context; .dockerignore should drop it." >&2
        exit 1
    fi
done

# The Dockerfile's build stage, in its order, from its WORKDIR.
cd "$context"
scripts/docker-build.sh toolchain
command -v "$qemu" >/dev/null || apt-get install -y --no-install-recommends qemu-user
SECONDS=0
scripts/docker-build.sh binary "$work/firetail"
echo "docker-build-stage.sh: the build took ${SECONDS}s."

file "$work/firetail"
if ! file "$work/firetail" | grep -q "$machine"; then
    echo "docker-build-stage.sh: $work/firetail is not a $machine binary." >&2
    exit 1
fi
version="$("$qemu" -L "$sysroot" "$work/firetail" --version)"
echo "$version"
if ! grep -q "commit $FIRETAIL_GIT_COMMIT" <<<"$version"; then
    echo "docker-build-stage.sh: --version does not name commit $FIRETAIL_GIT_COMMIT." >&2
    exit 1
fi
echo "docker-build-stage.sh: OK: $TARGETARCH binary $(stat -c %s "$work/firetail") bytes, commit $FIRETAIL_GIT_COMMIT."
