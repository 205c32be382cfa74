#!/usr/bin/env bash
# System packages the tests need beyond Rust and Python (called by scripts/test.sh):
#   logrotate — the file tests rotate with Debian's real logrotate (copytruncate, create),
#   ruby      — and with Ruby's Logger (shift_age), as the apps firetail serves do.
# Installs what is missing with apt-get when run as root; otherwise says what to install.
set -euo pipefail

missing=()
command -v logrotate >/dev/null 2>&1 || [[ -x /usr/sbin/logrotate ]] || missing+=(logrotate)
command -v ruby >/dev/null 2>&1 || missing+=(ruby)
command -v prlimit >/dev/null 2>&1 || missing+=(util-linux)

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps.sh: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "system-deps.sh: installing ${missing[*]}" >&2
apt-get update -qq
apt-get install -y -qq "${missing[@]}"
