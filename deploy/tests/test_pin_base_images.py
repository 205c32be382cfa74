"""scripts/pin-base-images.sh against a stand-in for `docker buildx imagetools
inspect` (no registry is reachable from the tests): it rewrites each FROM to
the digest its tag resolves to, keeps the rest of the line, and refuses a
digest that would break one of the image's two platforms. The digests here are
made up for the test; the Dockerfile's real ones come from a registry."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from deploycheck import REPO

PIN_SCRIPT = REPO / "scripts" / "pin-base-images.sh"
OLD = "sha256:" + "0" * 64
RUST = "sha256:" + "1" * 64
DISTROLESS = "sha256:" + "2" * 64
DOCKERFILE = f"""# syntax=docker/dockerfile:1
FROM --platform=$BUILDPLATFORM rust:1.95-slim-trixie@{OLD} AS build
RUN true
FROM gcr.io/distroless/cc-debian13:nonroot
COPY --from=build /firetail /firetail
"""


def index(digest: str, platforms: list[str]) -> dict:
    manifests = [
        {"digest": "sha256:" + "9" * 64, "platform": {"os": p.split("/")[0], "architecture": p.split("/")[1]}}
        for p in platforms
    ]
    return {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "manifests": manifests}


@pytest.fixture
def registry(tmp_path):
    """A fake `docker` on PATH answering imagetools inspect from JSON files."""
    bin_dir, answers = tmp_path / "bin", tmp_path / "answers"
    bin_dir.mkdir()
    answers.mkdir()
    docker = bin_dir / "docker"
    docker.write_text('#!/bin/sh\n[ "$1 $2 $3" = "buildx imagetools inspect" ] || exit 99\n'
                      f'exec cat "{answers}/$(echo "$4" | tr "/:" "__").json"\n')
    docker.chmod(0o755)
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DOCKERFILE)

    def answer(image: str, manifest: dict) -> None:
        (answers / (image.replace("/", "_").replace(":", "_") + ".json")).write_text(json.dumps(manifest))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKERFILE": str(dockerfile)}
        return subprocess.run([PIN_SCRIPT, *args], env=env, capture_output=True, text=True)

    return answer, run, dockerfile


def test_pins_each_base_image_to_its_tags_index(registry):
    answer, run, dockerfile = registry
    answer("rust:1.95-slim-trixie", index(RUST, ["linux/amd64", "linux/arm64", "unknown/unknown"]))
    answer("gcr.io/distroless/cc-debian13:nonroot", index(DISTROLESS, ["linux/amd64", "linux/arm64"]))
    out = run()
    assert out.returncode == 0, out.stderr
    lines = dockerfile.read_text().splitlines()
    assert lines[1] == f"FROM --platform=$BUILDPLATFORM rust:1.95-slim-trixie@{RUST} AS build"
    assert lines[3] == f"FROM gcr.io/distroless/cc-debian13:nonroot@{DISTROLESS}"
    assert dockerfile.read_text().replace(RUST, OLD).replace(f"@{DISTROLESS}", "") == DOCKERFILE
    assert run("--check").returncode == 0, "nothing moved since the rewrite"


def test_check_reports_a_moved_tag_and_changes_nothing(registry):
    answer, run, dockerfile = registry
    answer("rust:1.95-slim-trixie", index(RUST, ["linux/amd64", "linux/arm64"]))
    answer("gcr.io/distroless/cc-debian13:nonroot", index(DISTROLESS, ["linux/amd64", "linux/arm64"]))
    out = run("--check")
    assert out.returncode == 1
    assert f"rust:1.95-slim-trixie: {OLD} -> {RUST}" in out.stdout
    assert dockerfile.read_text() == DOCKERFILE


@pytest.mark.parametrize(
    "manifest, why",
    [
        (index(RUST, ["linux/amd64"]), "has no image for ['linux/arm64']"),
        ({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": RUST}, "single-platform image"),
    ],
)
def test_refuses_a_digest_one_platform_cannot_use(registry, manifest, why):
    answer, run, dockerfile = registry
    answer("rust:1.95-slim-trixie", manifest)
    out = run()
    assert out.returncode != 0
    assert why in out.stderr
    assert dockerfile.read_text() == DOCKERFILE
