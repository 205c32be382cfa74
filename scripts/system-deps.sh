#!/usr/bin/env bash
# Install the Debian packages the tests need, when they are missing:
#   promtool  (package prometheus)  deploy/tests: `promtool check rules` and
#                                    `promtool test rules` on deploy/prometheus
#                                    and the Grafana dashboard's queries.
# Installs only as root with apt-get (CI's image, a fresh Debian machine);
# otherwise it says what to install and leaves it to you. In CI the checks
# that need a missing tool then fail (CI=true); elsewhere they are skipped.
# Idempotent: says nothing and does nothing when everything is there.
set -euo pipefail

say() { printf 'system-deps: %s\n' "$*" >&2; }

# command -> Debian package
declare -A wanted=(
    [promtool]=prometheus
)

missing=()
for command in "${!wanted[@]}"; do
    command -v "$command" >/dev/null 2>&1 || missing+=("${wanted[$command]}")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing Debian packages: ${missing[*]} (apt-get install -y ${missing[*]}); the checks that need them are skipped, or fail when CI=true"
    exit 0
fi

say "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Only promtool is used from the `prometheus` package (in a container no init
# system starts the server it also ships).
apt-get update -qq >&2 || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
for command in "${!wanted[@]}"; do
    command -v "$command" >/dev/null 2>&1 || { say "error: $command still missing after installing ${wanted[$command]}"; exit 1; }
done
