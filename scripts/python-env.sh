#!/usr/bin/env bash
# Make <repo>/.venv with the Python tools the tests, the demo and the deploy
# checks use (scripts/requirements-test.txt: moto's server, boto3, pytest, ...).
#
# Idempotent and cheap to re-run: pip runs only when the venv is missing or
# broken, or when the requirements file (or the interpreter) changed since the
# last successful install (a stamp file inside the venv records its hash).
# Says what it does on stderr; says nothing when there is nothing to do.
#
# Environment:
#   FIRETAIL_PYTHON   interpreter used to create the venv (default: python3)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
req="$repo/scripts/requirements-test.txt"
stamp="$venv/.firetail-requirements.sha256"
python="${FIRETAIL_PYTHON:-python3}"

say() { printf 'python-env: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[[ -f "$req" ]] || die "missing $req"

# What a good venv must match: the requirements and the interpreter it was made with.
want_stamp() {
    local pyver
    pyver="$("$venv/bin/python" -c 'import sys; print(sys.version)' 2>/dev/null || echo none)"
    { sha256sum "$req" | cut -d' ' -f1; echo "$pyver"; } | sha256sum | cut -d' ' -f1
}

up_to_date() {
    [[ -x "$venv/bin/python" && -x "$venv/bin/moto_server" && -f "$stamp" ]] || return 1
    "$venv/bin/python" -c '' 2>/dev/null || return 1
    [[ "$(cat "$stamp")" == "$(want_stamp)" ]]
}

# Fast path, no lock: nothing to do.
if up_to_date; then
    exit 0
fi

# Serialise concurrent runs (e.g. the demo and the tests started together).
if command -v flock >/dev/null 2>&1; then
    mkdir -p "$repo/target"
    exec 9>"$repo/target/.python-env.lock"
    flock 9
    if up_to_date; then
        exit 0
    fi
fi

as_root_apt_install() {
    # Install Debian packages, only when we are root and apt-get exists.
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        return 1
    fi
    say "installing Debian packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq "$@" >&2
}

if ! command -v "$python" >/dev/null 2>&1; then
    as_root_apt_install python3 python3-venv ||
        die "$python not found; install Python 3 (Debian: apt-get install python3 python3-venv)"
    python=python3
fi

# `python3 -m venv` needs ensurepip, which Debian ships separately (python3-venv).
venv_works() {
    local probe
    probe="$(mktemp -d)"
    if "$python" -m venv "$probe/v" >/dev/null 2>&1 && [[ -x "$probe/v/bin/pip" ]]; then
        rm -rf "$probe"
        return 0
    fi
    rm -rf "$probe"
    return 1
}

make_venv() {
    rm -rf "$venv"
    say "creating virtualenv $venv with $(command -v "$python") ($("$python" --version 2>&1))"
    "$python" -m venv "$venv"
}

if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import pip' >/dev/null 2>&1; then
    if ! venv_works; then
        pyminor="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        say "'$python -m venv' does not work here (ensurepip missing?)"
        as_root_apt_install python3-venv "python${pyminor}-venv" ||
            die "'$python -m venv' does not work; install python3-venv (Debian: apt-get install python3-venv python${pyminor}-venv)"
        venv_works || die "'$python -m venv' still does not work after installing python3-venv"
    fi
    make_venv
fi

say "installing $(basename "$req") into $venv (pip; this takes a minute the first time)"
rm -f "$stamp"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req" >&2
[[ -x "$venv/bin/moto_server" ]] || die "pip finished but $venv/bin/moto_server is missing"
want_stamp >"$stamp"
say "ready: $venv"
