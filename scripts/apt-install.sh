#!/usr/bin/env bash
# Install the given Debian packages with apt-get (the caller decides which are
# missing: scripts/system-deps.sh for the tests). Installs only as root on a
# machine with apt-get; otherwise it says what to install and fails.
#
# Usage: scripts/apt-install.sh WHO PACKAGE...   (WHO prefixes its messages)
set -euo pipefail

who="$1"
shift
[[ $# -eq 0 ]] && exit 0
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    printf '%s: missing Debian packages: %s (apt-get install -y %s)\n' "$who" "$*" "$*" >&2
    exit 1
fi
printf '%s: installing Debian packages: %s\n' "$who" "$*" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || true
apt-get install -y -qq --no-install-recommends "$@" >&2
