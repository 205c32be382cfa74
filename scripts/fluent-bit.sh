#!/usr/bin/env bash
# Build the Fluent Bit that the benchmark (examples/bench.rs) runs beside firetail, and
# print the path of its binary on stdout.
#
# Why this way: Debian has no Fluent Bit package and its upstream registries are not
# reachable from where the benchmark runs, but the npm package `fluent-bit` 0.0.3 carries
# the full Fluent Bit 1.8.15 source (package/src/fluent-bit). We fetch that tarball with
# npm's own client, check it against the integrity npm published for it, and build it
# here. No Fluent Bit code is committed to this repository.
#
# What is built: a release build (-DFLB_RELEASE=On: -O2 -g -DNDEBUG, like Fluent Bit's
# own packages) with TLS, the SQLite DB (in_tail's checkpoint), inotify, parsers and the
# record accessor as in every stock build, but only the two plugins the benchmark uses:
# the `tail` input and the `kinesis_firehose` output. Every other plugin, LuaJIT, the
# stream processor, the HTTP server and the Go plugin proxy are off: they would only add
# code that the benchmark's configuration never runs. Jemalloc stays off (the CMake
# default), so both agents use glibc's malloc. Debian 12's GCC 12 builds it as it is
# (no -fcommon or other flags for old C were needed).
#
# Idempotent: a second run reuses the tarball, the source and the build, and only prints
# the path. Builds with all cores (`make -j$(nproc)`); a run started meanwhile waits for
# it (flock on the cache directory).
#
# Environment:
#   FIRETAIL_FLUENT_BIT_DIR   cache directory (default: <repo>/target/fluent-bit)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${FIRETAIL_FLUENT_BIT_DIR:-$repo/target/fluent-bit}"
package="fluent-bit@0.0.3"
tarball_name="fluent-bit-0.0.3.tgz"
version="1.8.15"
# The `dist.integrity` npm's registry publishes for fluent-bit@0.0.3.
integrity="sha512-aphqYAdWbA78zBOJZ8MMThiMGRKQHFoPl988INriZRnTPYrryyyPlG8csC3ZZOe/xAYgbuBZ4mY94i+RyDRGFQ=="

source_dir="$cache/src/fluent-bit-$version"
build_dir="$cache/build-$version"
binary="$build_dir/bin/fluent-bit"

say() { printf 'fluent-bit: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

if [[ -x "$binary" ]]; then
    printf '%s\n' "$binary"
    exit 0
fi

# Debian packages the build needs: command -> package (the library is checked by file).
install_build_deps() {
    declare -A wanted=(
        [cmake]=cmake [make]=make [gcc]=gcc [g++]=g++ [flex]=flex [bison]=bison
        [pkg-config]=pkg-config [npm]=npm [openssl]=openssl
    )
    local missing=() command
    for command in "${!wanted[@]}"; do
        command -v "$command" >/dev/null 2>&1 || missing+=("${wanted[$command]}")
    done
    [[ -f /usr/include/openssl/ssl.h ]] || missing+=(libssl-dev)
    [[ -f /usr/include/oniguruma.h ]] || missing+=(libonig-dev)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    "$repo/scripts/apt-install.sh" fluent-bit "${missing[@]}"
}

# npm records integrity as "sha512-" + base64 of the tarball's SHA-512.
tarball_integrity() {
    printf 'sha512-%s' "$(openssl dgst -sha512 -binary "$1" | base64 -w0)"
}

fetch_source() {
    [[ -f "$source_dir/CMakeLists.txt" ]] && return 0
    mkdir -p "$cache"
    local tarball="$cache/$tarball_name"
    if [[ ! -f "$tarball" ]]; then
        say "fetching $package with npm pack"
        (cd "$cache" && npm pack --silent "$package" >/dev/null)
        [[ -f "$tarball" ]] || die "npm pack $package did not leave $tarball"
    fi
    local actual
    actual="$(tarball_integrity "$tarball")"
    if [[ "$actual" != "$integrity" ]]; then
        rm -f "$tarball"
        die "$tarball has integrity $actual, expected $integrity (removed; run again)"
    fi
    say "unpacking Fluent Bit $version source"
    local unpack="$cache/unpack.$$"
    rm -rf "$unpack" && mkdir -p "$unpack"
    tar -xzf "$tarball" -C "$unpack" package/src/fluent-bit
    grep -q "FLB_VERSION_PATCH *15" "$unpack/package/src/fluent-bit/CMakeLists.txt" ||
        die "the tarball's source is not Fluent Bit $version"
    mkdir -p "$cache/src"
    rm -rf "$source_dir"
    mv "$unpack/package/src/fluent-bit" "$source_dir"
    rm -rf "$unpack"
}

# The npm tarball lacks lib/onigmo (Fluent Bit's regex engine, a fork of Oniguruma),
# and Fluent Bit cannot be built without it: FLB_PARSER forces FLB_REGEX, and in_tail
# does not compile without FLB_PARSER. So lib/onigmo becomes a stand-in whose
# `configure && make install` (what cmake/onigmo.cmake runs) installs a header that
# includes Debian's <oniguruma.h> and a `libonigmo.a` that is a linker script pulling
# in Debian's libonig.so. Oniguruma has every call Fluent Bit makes (onig_new,
# onig_search, onig_match, onig_foreach_name, ... with ONIG_SYNTAX_RUBY); the bench's
# configuration uses no parser or regex, so none of them runs there.
stand_in_onigmo() {
    local dir="$source_dir/lib/onigmo"
    [[ -x "$dir/configure" ]] && return 0
    mkdir -p "$dir"
    cat >"$dir/configure" <<'CONFIGURE'
#!/bin/sh
# Written by firetail's scripts/fluent-bit.sh: Debian's Oniguruma in Onigmo's place.
prefix=
for arg in "$@"; do
    case "$arg" in --prefix=*) prefix="${arg#--prefix=}" ;; esac
done
[ -n "$prefix" ] || { echo "configure: --prefix is required" >&2; exit 1; }
echo '#include <oniguruma.h>' >onigmo.h
echo 'INPUT(-lonig)' >libonigmo.a
printf 'all:\n\ninstall:\n\tmkdir -p %s/include %s/lib\n' "$prefix" "$prefix" >Makefile
printf '\tcp onigmo.h %s/include/\n\tcp libonigmo.a %s/lib/\n' "$prefix" "$prefix" >>Makefile
CONFIGURE
    chmod +x "$dir/configure"
}

# -DFLB_x=Off for every input, output and filter plugin except the two the bench uses,
# read from the source's own option list so that none is missed. The storage backlog
# input stays: the engine calls it (sb_segregate_chunks) whether or not it is used.
plugin_switches() {
    grep -oE '^option\(FLB_(IN|OUT|FILTER)_[A-Z0-9_]+' "$source_dir/CMakeLists.txt" |
        sed 's/^option(//' |
        grep -vxE 'FLB_IN_TAIL|FLB_OUT_KINESIS_FIREHOSE|FLB_IN_STORAGE_BACKLOG' |
        sed 's/.*/-D&=Off/'
}

# Configures again only when the switches changed (recorded in cmake.args).
configure() {
    local args switches
    mapfile -t switches < <(plugin_switches)
    args=(
        -DFLB_RELEASE=On -DFLB_DEBUG=Off -DFLB_TRACE=Off -DFLB_JEMALLOC=Off
        -DFLB_TLS=On -DFLB_SQLDB=On -DFLB_INOTIFY=On -DFLB_AWS=On -DFLB_SIGNV4=On
        -DFLB_IN_TAIL=On -DFLB_OUT_KINESIS_FIREHOSE=On -DFLB_IN_STORAGE_BACKLOG=On
        -DFLB_LUAJIT=Off -DFLB_STREAM_PROCESSOR=Off -DFLB_HTTP_SERVER=Off
        -DFLB_PROXY_GO=Off -DFLB_CUSTOM_CALYPTIA=Off -DFLB_EXAMPLES=Off
        -DFLB_SHARED_LIB=Off -DFLB_BINARY=On
        "${switches[@]}"
    )
    if [[ -f "$build_dir/Makefile" && "$(cat "$build_dir/cmake.args" 2>/dev/null)" == "${args[*]}" ]]; then
        return 0
    fi
    say "configuring Fluent Bit $version in $build_dir"
    mkdir -p "$build_dir"
    rm -f "$build_dir/cmake.args"
    (cd "$build_dir" && cmake "$source_dir" "${args[@]}" >"$build_dir/cmake.log" 2>&1) ||
        { tail -n 30 "$build_dir/cmake.log" >&2; rm -f "$build_dir/Makefile"; die "cmake failed (log: $build_dir/cmake.log)"; }
    printf '%s' "${args[*]}" >"$build_dir/cmake.args"
}

build() {
    say "building Fluent Bit $version with $(nproc) jobs (log: $build_dir/make.log)"
    make -C "$build_dir" -j"$(nproc)" fluent-bit-bin >"$build_dir/make.log" 2>&1 ||
        { grep -E 'error|Error' "$build_dir/make.log" | tail -n 20 >&2; die "make failed (log: $build_dir/make.log)"; }
    [[ -x "$binary" ]] || die "the build finished without $binary"
    "$binary" --version >&2
}

install_build_deps
mkdir -p "$cache"
# One build at a time: a second run waits for the first, then reuses its build.
exec 9>"$cache/.lock"
flock 9
[[ -x "$binary" ]] && { printf '%s\n' "$binary"; exit 0; }
fetch_source
stand_in_onigmo
configure
build
printf '%s\n' "$binary"
