"""Checks of the Dockerfile and .dockerignore, without a Docker engine: the
image is built with the command CI proves, for amd64 and arm64 from one build
stage that cross-compiles, on base images pinned by digest; it runs firetail as
PID 1 (exec-form ENTRYPOINT, so SIGTERM reaches it) as a numeric non-root user,
on a minimal base whose glibc matches the builder's."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tomllib

import pytest
from packaging.version import Version

import dockerignore
from deploycheck import DEPLOYING_GUIDE, DOCKERFILE, DOCKERIGNORE, REPO

BUILD_COMMAND = ["cargo", "build", "--release", "--locked", "-p", "firetail"]
# The build stage's commands, one script that the Dockerfile and the proof of
# the cross build outside Docker both run.
BUILD_SCRIPT = REPO / "scripts" / "docker-build.sh"
STAGE_PROOF = REPO / "scripts" / "docker-build-stage.sh"
PIN_SCRIPT = REPO / "scripts" / "pin-base-images.sh"
STAGE_COMMANDS = [["scripts/docker-build.sh", "toolchain"], ["scripts/docker-build.sh", "binary", "/firetail"]]
# The platforms the image is built for (docs/deploying.md, "Build the image"), by
# BuildKit's TARGETARCH, with the Rust target each cross-compiles to.
TARGETS = {"amd64": "x86_64-unknown-linux-gnu", "arm64": "aarch64-unknown-linux-gnu"}
PINNED = re.compile(r"(?P<image>[a-z0-9./_-]+):(?P<tag>[\w.-]+)@sha256:[0-9a-f]{64}")
# Debian release of each base image family, by tag: the builder's glibc must
# not be newer than the runtime's.
DEBIAN_RELEASE = {"bookworm": 12, "trixie": 13, "forky": 14}


def instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each instruction, continuation lines joined and
    comments dropped (parser directives included: none matter here)."""
    result, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, rest = (pending + stripped).partition(" ")
        result.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage, FROM first (ARGs before the first FROM
    are dropped)."""
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def arg_defaults() -> dict[str, str]:
    defaults = {}
    for keyword, rest in instructions():
        if keyword == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def base_image(stage: list[tuple[str, str]]) -> str:
    words = [w for w in stage[0][1].split() if not w.startswith("--")]
    image = words[0]
    for name, value in arg_defaults().items():
        image = image.replace("${" + name + "}", value).replace("$" + name, value)
    return image


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def final_stage_user() -> tuple[int, int]:
    users = [rest for keyword, rest in final_stage() if keyword == "USER"]
    assert users, "the runtime stage sets no USER: it would run as root"
    user = users[-1]
    m = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    assert m, f"USER {user!r} is not numeric: the kubelet cannot check runAsNonRoot against a name"
    uid = int(m.group(1))
    gid = int(m.group(2)) if m.group(2) is not None else uid
    return uid, gid


def run_commands(stage: list[tuple[str, str]]) -> list[list[str]]:
    """Each `&&`/`;`-separated command of the stage's RUN instructions, as tokens,
    with RUN's own flags (--mount=...) removed."""
    commands = []
    for keyword, rest in stage:
        if keyword != "RUN":
            continue
        tokens = shlex.split(rest)
        while tokens and tokens[0].startswith("--"):
            tokens.pop(0)
        command: list[str] = []
        for token in tokens + ["&&"]:
            if token in ("&&", ";", "||"):
                if command:
                    commands.append(command)
                command = []
            else:
                command.append(token)
    return commands


def test_is_multi_stage():
    assert len(stages()) >= 2, "build in one stage, run in another"
    copies = [rest for keyword, rest in final_stage() if keyword == "COPY"]
    assert any(rest.startswith("--from=") for rest in copies), "the runtime stage copies nothing from the build"


def script_lines(path) -> list[list[str]]:
    """Each non-comment line of a shell script, as tokens."""
    lines = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            lines.append(shlex.split(line, comments=True))
    return lines


def test_the_build_stage_runs_the_one_build_script():
    """The Dockerfile keeps no build command of its own: it runs the script
    that scripts/docker-build-stage.sh runs outside Docker, so the two cannot
    drift apart."""
    build_stages = stages()[:-1]
    assert [c for stage in build_stages for c in run_commands(stage)] == STAGE_COMMANDS
    copies = [rest for keyword, rest in build_stages[0] if keyword == "COPY"]
    assert copies[0] == "scripts/docker-build.sh scripts/", "the toolchain step runs before the sources are copied"
    assert not dockerignore.is_ignored("scripts/docker-build.sh", dockerignore.rules(DOCKERIGNORE))


def test_the_proof_outside_docker_runs_the_same_commands():
    proof = [line for line in script_lines(STAGE_PROOF) if line and line[0] == "scripts/docker-build.sh"]
    assert [line[:2] for line in proof] == [c[:2] for c in STAGE_COMMANDS], proof
    text = STAGE_PROOF.read_text()
    assert "dockerignore.py" in text, "the proof must build from the context .dockerignore leaves"
    assert "FIRETAIL_GIT_COMMIT" in text and "--version" in text


def test_builds_with_the_command_ci_proves():
    builds = [line for line in script_lines(BUILD_SCRIPT) if line[:2] == ["cargo", "build"]]
    assert builds == [BUILD_COMMAND + ["--target", "$triple"]], (
        f"expected exactly {' '.join(BUILD_COMMAND)} --target <triple>, found {builds}"
    )


def test_ci_runs_the_same_build_command():
    ci_files = [p for p in (REPO / ".ci").glob("*") if p.is_file()] if (REPO / ".ci").is_dir() else []
    assert ci_files, ".ci/ has no scripts: CI would run nothing"
    # .ci/run, or a script of scripts/ it calls, must build the release binary
    # with the lock file, flags in either order.
    # The image's own scripts (scripts/docker-*.sh) do not count: they are what
    # CI must prove, not CI.
    candidates = ci_files + [p for p in (REPO / "scripts").glob("*.sh") if not p.name.startswith("docker-")]
    builds = [
        line
        for p in candidates
        for line in p.read_text(errors="replace").splitlines()
        if re.search(r"\bcargo\s+build\b", line) and not line.lstrip().startswith("#")
    ]
    assert any(
        {"--release", "--locked"} <= set(line.split()) for line in builds
    ), f"CI does not run `cargo build --release --locked`, so it does not prove the image's build: {builds}"


def test_builder_toolchain_is_new_enough():
    builder = base_image(stages()[0])
    m = re.match(r"rust:(\d+\.\d+(?:\.\d+)?)-", builder)
    assert m, f"pin the toolchain in the builder's tag (rust:<version>-...): {builder}"
    cargo = tomllib.loads((REPO / "Cargo.toml").read_text())
    msrv = cargo["package"].get("rust-version")
    if msrv:
        assert Version(m.group(1)) >= Version(msrv), f"rust {m.group(1)} < rust-version {msrv}"


def test_builds_the_binary_the_manifest_names():
    cargo = tomllib.loads((REPO / "Cargo.toml").read_text())
    names = {b["name"] for b in cargo.get("bin", [])} or {cargo["package"]["name"]}
    assert "firetail" in names
    copies = [line for line in script_lines(BUILD_SCRIPT) if line and line[0] == "cp"]
    assert copies == [["cp", "${CARGO_TARGET_DIR:-target}/$triple/release/firetail", "$output"]], copies


def test_the_build_stage_cross_compiles_for_each_target_platform():
    """One build stage on the build machine's platform compiles for each
    TARGETARCH: no QEMU, and the runtime stage (target platform) runs nothing."""
    build = stages()[0]
    assert build[0][1].startswith("--platform=$BUILDPLATFORM "), build[0]
    assert ("ARG", "TARGETARCH") in build
    assert not final_stage()[0][1].startswith("--platform"), "the runtime stage must be the target platform's"
    assert not [rest for keyword, rest in final_stage() if keyword == "RUN"], "a RUN here would need emulation"
    text = BUILD_SCRIPT.read_text()
    for arch, triple in TARGETS.items():
        assert re.search(rf"^\s*{arch}\) triple={triple} gnu=", text, re.M), f"{arch} -> {triple}"


def test_the_build_script_refuses_an_unknown_platform():
    out = subprocess.run(
        [BUILD_SCRIPT, "toolchain"], env={**os.environ, "TARGETARCH": "s390x"}, capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "TARGETARCH=s390x is not supported" in out.stderr


def test_base_images_are_pinned_by_tag_and_digest():
    for stage in stages():
        words = [w for w in stage[0][1].split() if not w.startswith("--")]
        assert PINNED.fullmatch(words[0]), f"FROM {words[0]}: pin it as image:tag@sha256:<digest> (scripts/pin-base-images.sh)"


def test_runtime_is_minimal_and_matches_the_builders_glibc():
    runtime = base_image(final_stage())
    assert re.match(r"(gcr\.io/distroless/|scratch$|cgr\.dev/chainguard/static)", runtime), (
        f"runtime image {runtime} is not distroless or scratch"
    )
    if runtime.startswith("gcr.io/distroless/"):
        assert re.match(r"gcr\.io/distroless/(cc|static)-debian\d+", runtime), runtime
        runtime_release = int(re.search(r"debian(\d+)", runtime).group(1))
        builder = base_image(stages()[0])
        builder_release = next((v for k, v in DEBIAN_RELEASE.items() if k in builder), None)
        assert builder_release is not None, f"name the builder's Debian release in its tag: {builder}"
        assert builder_release <= runtime_release, (
            f"built on Debian {builder_release}, run on Debian {runtime_release}: glibc mismatch"
        )


def test_entrypoint_is_exec_form():
    entrypoints = [rest for keyword, rest in final_stage() if keyword == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT in the runtime stage"
    try:
        entrypoint = json.loads(entrypoints[-1])
    except json.JSONDecodeError:
        pytest.fail(f"ENTRYPOINT {entrypoints[-1]} is shell form: /bin/sh would be PID 1 and swallow SIGTERM")
    assert isinstance(entrypoint, list) and all(isinstance(a, str) for a in entrypoint)
    assert entrypoint[0] == "/firetail"
    copied = [rest.split()[-1] for keyword, rest in final_stage() if keyword == "COPY"]
    assert "/firetail" in copied, "the entrypoint is not the binary copied in"
    for keyword, rest in final_stage():
        if keyword == "CMD":
            assert rest.startswith("["), "a shell-form CMD would run through /bin/sh"


def test_runs_as_a_numeric_non_root_user():
    uid, gid = final_stage_user()
    assert uid != 0 and gid != 0


def is_ignored(path: str) -> bool:
    return dockerignore.is_ignored(path, dockerignore.rules(DOCKERIGNORE))


@pytest.mark.parametrize(
    "path",
    [
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
        "src/lib.rs",
        "tests/it/main.rs",
        "benches/throughput.rs",
        "scripts/docker-build.sh",
    ],
)
def test_dockerignore_keeps_what_cargo_reads(path):
    assert not is_ignored(path), f".dockerignore excludes {path}, which `cargo build --locked` needs"


@pytest.mark.parametrize(
    "path",
    [
        "target/release/firetail",
        ".git/HEAD",
        ".venv/bin/python",
        "deploy/terraform/main.tf",
        "scripts/test.sh",
        "scripts/docker-build-stage.sh",
    ],
)
def test_dockerignore_drops_what_the_build_does_not_need(path):
    assert is_ignored(path), f".dockerignore should exclude {path}"


def test_the_build_stage_hands_the_commit_to_build_rs():
    """.git is not in the build context, so the commit reaches build.rs (and
    `firetail --version`, `firetail_build_info`) only as a build argument that the
    build stage exports as FIRETAIL_GIT_COMMIT."""
    build = stages()[0]
    assert ("ARG", "FIRETAIL_GIT_COMMIT=unknown") in build
    assert ("ENV", "FIRETAIL_GIT_COMMIT=${FIRETAIL_GIT_COMMIT}") in build
    assert "FIRETAIL_GIT_COMMIT" in (REPO / "build.rs").read_text()


def test_the_context_is_what_dockerignore_leaves():
    """The file list scripts/docker-build-stage.sh copies: what Cargo reads and
    the build script, no repository, no build output, no deploy files."""
    files = dockerignore.context_files(REPO)
    assert {"Cargo.toml", "Cargo.lock", "build.rs", "src/main.rs", "scripts/docker-build.sh"} <= set(files)
    top = {f.split("/")[0] for f in files}
    assert not top & {".git", "target", "deploy", ".venv"}, top
    assert [f for f in files if f.startswith("scripts/")] == ["scripts/docker-build.sh"]


def test_the_multi_platform_command_is_documented_where_users_look():
    platforms = ",".join(f"linux/{arch}" for arch in TARGETS)
    guide = DEPLOYING_GUIDE.read_text()
    build_section = guide[guide.index("## 1. Build the image") : guide.index("## 2. ")]
    for where, text in (("docs/deploying.md, 1. Build the image", build_section), ("Dockerfile", DOCKERFILE.read_text())):
        assert f"docker buildx build --platform {platforms}" in text, where
        assert "--build-arg FIRETAIL_GIT_COMMIT=" in text, where
