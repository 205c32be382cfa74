# syntax=docker/dockerfile:1
#
# firetail's container image: a release build in a Rust image, copied alone onto
# distroless. Build it with BuildKit (the default builder of Docker >= 23):
#
#     docker build --build-arg FIRETAIL_GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t firetail:dev .
#     docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/firetail:TAG --push .
#
# Expected size: about 40 MB uncompressed, ~15 MB compressed in the registry.
# The binary is 15.7 MB after `strip --strip-debug` (60 MB before: the release
# profile keeps line tables), 5.6 MB gzipped (measured on x86_64, Rust 1.95); the
# distroless `cc` base (glibc, libgcc_s, CA certificates, tzdata, /etc/passwd)
# is about 23 MB. Check a real build with `docker image ls` and correct these
# figures if they are off.

# The toolchain CI uses. Keep it >= `rust-version` in Cargo.toml (deploy/tests
# check both). The builder and the runtime must share a Debian release, so that
# the glibc the binary was linked against is the one it runs on: trixie and
# debian13 here. In production, pin both images by digest as well.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-trixie AS build
WORKDIR /src
# The commit `firetail --version` and `firetail_build_info` name: .git is not in the
# build context, so pass it in:
#     docker build --build-arg FIRETAIL_GIT_COMMIT=$(git rev-parse --short=12 HEAD) .
# Without it the binary says "commit unknown" (build.rs).
ARG FIRETAIL_GIT_COMMIT=unknown
ENV FIRETAIL_GIT_COMMIT=${FIRETAIL_GIT_COMMIT}
# The whole context minus .dockerignore: Cargo resolves every target declared in
# Cargo.toml (tests/, benches/) even when it builds only the binary.
COPY . .
# `--locked`: build exactly the dependency versions in Cargo.lock, the ones CI
# tested; fail rather than resolve anew. This is the command CI runs
# (deploy/tests/test_dockerfile.py checks that the two agree).
# The cache mounts keep the registry and target/ between builds of this image
# (they do not end up in it), so the binary is copied out in the same step.
# aws-lc-sys compiles C with the image's gcc; no cmake is needed on Linux.
# `strip --strip-debug` drops the line tables that the release profile keeps
# (`debug = "line-tables-only"`, for profiling): 60 MB -> 15.7 MB. It keeps the
# symbols (3 MB), so a panic backtrace still names its functions.
# `-p firetail`: the sidecar package only. The repository is a workspace, and
# its other member (query/, the firetail-query binary with aws-sdk-athena) is
# neither built nor downloaded, so the image does not grow; Cargo still reads
# query/Cargo.toml to load the workspace, so it stays in the context.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p firetail \
    && cp target/release/firetail /firetail \
    && strip --strip-debug /firetail

# Distroless `cc`: glibc and libgcc_s (the Rust binary links both dynamically),
# CA certificates (rustls loads the system roots to reach Firehose and STS), no
# shell and no package manager. The `nonroot` variant runs as 65532:65532.
FROM gcr.io/distroless/cc-debian13:nonroot
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
