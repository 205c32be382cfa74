# syntax=docker/dockerfile:1
#
# firetail's container image: a release build in a Rust image, copied alone onto
# distroless. Build it with BuildKit (the default builder of Docker >= 23):
#
#     docker build --build-arg FIRETAIL_GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t firetail:dev .
#
# For amd64 and arm64 (Graviton) at once, as one multi-platform image:
#
#     docker buildx create --name firetail-multiarch --driver docker-container --use   # once
#     docker buildx build --platform linux/amd64,linux/arm64 \
#         --build-arg FIRETAIL_GIT_COMMIT=$(git rev-parse --short=12 HEAD) \
#         -t REGISTRY/firetail:TAG --push .
#
# (The default `docker` driver cannot store a multi-platform image unless Docker
# uses the containerd image store; a docker-container builder pushes it.) No QEMU
# is needed: the build stage runs natively and cross-compiles, and the runtime
# stage has no RUN. scripts/docker-build-stage.sh proves the cross build without
# Docker.
#
# Expected size: about 34 MB uncompressed. The binary is 11.2 MB on amd64 and
# 10.1 MB on arm64 after `strip --strip-debug` (about 43 MB before: the release
# profile keeps line tables), 4.3 and 4.1 MB gzipped (scripts/docker-build-stage.sh,
# Rust 1.95, 2026-12-03); the distroless `cc` base (glibc, libgcc_s, CA
# certificates, tzdata, /etc/passwd) is about 23 MB. Check a real build with
# `docker image ls` and correct these figures if they are off.

# Base images: tag and digest. The digest decides what is pulled (Docker ignores
# the tag once a digest is given) and the tag says what it is to a reader; both
# digests are multi-platform indexes, so each platform gets its own image.
# Refresh both with scripts/pin-base-images.sh (docker buildx imagetools), which
# also checks that the index covers linux/amd64 and linux/arm64; deploy/tests
# fail on a FROM without a digest. These two were taken from public records, not
# from the registry (none was reachable where they were pinned): the rust one is
# docker-library/repo-info's listing of rust:1.95-slim-trixie, as mirrored in
# maxmood96/repo-info (an OCI index with linux/amd64 and linux/arm64, Rust
# 1.95.0); the distroless one is what many public Dockerfiles pin for
# cc-debian13:nonroot and call the multi-arch index. Run
# `scripts/pin-base-images.sh --check` once with registry access to confirm them.
#
# The builder: the toolchain CI uses, >= `rust-version` in Cargo.toml (deploy/tests
# check both). The builder and the runtime must share a Debian release, so that
# the glibc the binary was linked against is the one it runs on: trixie and
# debian13 here. The build stage runs on the build machine's own platform and
# cross-compiles for each target platform: rustc under QEMU emulation would be
# many times slower.
FROM --platform=$BUILDPLATFORM rust:1.95-slim-trixie@sha256:985053ebf77f576c742435c12c1923ee04dbe511e17f087dd1a8f022307d3aeb AS build
# Set by BuildKit for each platform of `--platform` (amd64, arm64).
ARG TARGETARCH
WORKDIR /src
# The build stage's commands live in scripts/docker-build.sh (the one script of
# scripts/ in the context), so that scripts/docker-build-stage.sh can run them
# outside Docker. First the target's Rust standard library and, for a cross
# build, Debian's cross gcc and the target's glibc: a layer of its own, cached
# until the script changes.
COPY scripts/docker-build.sh scripts/
RUN scripts/docker-build.sh toolchain
# The commit `firetail --version` and `firetail_build_info` name: .git is not in the
# build context, so pass it in:
#     docker build --build-arg FIRETAIL_GIT_COMMIT=$(git rev-parse --short=12 HEAD) .
# Without it the binary says "commit unknown" (build.rs).
ARG FIRETAIL_GIT_COMMIT=unknown
ENV FIRETAIL_GIT_COMMIT=${FIRETAIL_GIT_COMMIT}
# The whole context minus .dockerignore: Cargo resolves every target declared in
# Cargo.toml (tests/, benches/) even when it builds only the binary, and reads
# query/Cargo.toml to load the workspace (query/ itself is not built).
COPY . .
# `cargo build --release --locked -p firetail --target <triple>`, then strip: see
# the script. The cache mounts keep the registry and target/ between builds of this
# image (they do not end up in it), so the binary is copied out in the same step;
# both platforms' builds share them (target/<triple>/ apart, Cargo locks the rest).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/docker-build.sh binary /firetail

# Distroless `cc`: glibc and libgcc_s (the Rust binary links both dynamically),
# CA certificates (rustls loads the system roots to reach Firehose and STS), no
# shell and no package manager. The `nonroot` variant runs as 65532:65532.
FROM gcr.io/distroless/cc-debian13:nonroot@sha256:e792ab3d241a468a4fd7519ddbbebe66b49b5f365771716ea688ad40b6c6f1c2
COPY --from=build /firetail /firetail
# Numeric, so the kubelet can verify `runAsNonRoot: true` without reading
# /etc/passwd; the same ids as the manifests' securityContext.
USER 65532:65532
# The default --metrics-addr port: /metrics, /healthz, /readyz.
EXPOSE 9797
# Exec form: firetail is PID 1 and receives the kubelet's SIGTERM itself. The
# shell form would put /bin/sh (absent here anyway) in between, which does not
# forward signals, and the drain would never start.
ENTRYPOINT ["/firetail"]
