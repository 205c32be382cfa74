#!/usr/bin/env bash
# The Dockerfile's build stage: the one place its commands live. The Dockerfile runs
#     scripts/docker-build.sh toolchain      # before the sources are copied (a cached layer)
#     scripts/docker-build.sh binary /firetail
# and scripts/docker-build-stage.sh runs the same two outside Docker to prove a cross build
# (deploy/tests/test_dockerfile.py checks that all three agree).
#
# The stage runs on the build machine's platform ($BUILDPLATFORM) and cross-compiles for
# TARGETARCH (BuildKit's name: amd64 or arm64; default: this machine's): running rustc
# under emulation instead would take many times longer. Native builds take the same path
# with `--target`, so the binary is always at target/<triple>/release/firetail.
set -euo pipefail

usage() {
    echo "usage: TARGETARCH=amd64|arm64 $0 toolchain | binary OUTPUT" >&2
    exit 2
}

host_arch="$(dpkg --print-architecture)"
target_arch="${TARGETARCH:-$host_arch}"
case "$target_arch" in
    amd64) triple=x86_64-unknown-linux-gnu gnu=x86_64-linux-gnu ;;
    arm64) triple=aarch64-unknown-linux-gnu gnu=aarch64-linux-gnu ;;
    *)
        echo "docker-build.sh: TARGETARCH=$target_arch is not supported (amd64, arm64)." >&2
        exit 2
        ;;
esac
cross=false
[[ "$target_arch" != "$host_arch" ]] && cross=true

# The Rust standard library for the target, and for a cross build Debian's C cross
# compiler and the target's libc headers: aws-lc-sys (rustls' crypto) compiles C, and
# the linker must find the target's glibc. The package names are Debian's: gcc-<triple
# with dashes>, libc6-dev-<debian arch>-cross.
toolchain() {
    rustup target add "$triple"
    if $cross; then
        apt-get update
        apt-get install -y --no-install-recommends "gcc-${gnu//_/-}" "libc6-dev-${target_arch}-cross"
    fi
}

# `--locked`: exactly the dependency versions in Cargo.lock, the ones CI tested. `-p
# firetail`: the sidecar only, not the workspace's query/ binary. `strip --strip-debug`
# drops the line tables the release profile keeps (~43 MB -> 11.2 MB on amd64) but keeps
# the symbols, so a panic backtrace still names its functions.
binary() {
    local output="$1" strip=strip
    if $cross; then
        local env_triple="${triple//-/_}"
        export "CARGO_TARGET_${env_triple^^}_LINKER=${gnu}-gcc"
        export "CC_${env_triple}=${gnu}-gcc" "AR_${env_triple}=${gnu}-ar"
        strip="${gnu}-strip"
    fi
    cargo build --release --locked -p firetail --target "$triple"
    cp "${CARGO_TARGET_DIR:-target}/$triple/release/firetail" "$output"
    "$strip" --strip-debug "$output"
}

case "${1:-}" in
    toolchain) [[ $# -eq 1 ]] || usage; toolchain ;;
    binary) [[ $# -eq 2 ]] || usage; binary "$2" ;;
    *) usage ;;
esac
