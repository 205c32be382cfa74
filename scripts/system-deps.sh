#!/usr/bin/env bash
# Install the Debian packages the tests need beyond Rust and Python, when missing
# (called by scripts/test.sh):
#   logrotate  (logrotate)    the file tests rotate with Debian's real logrotate
#                             (copytruncate, create);
#   ruby       (ruby)         and with Ruby's Logger (shift_age), as the apps firetail
#                             serves do;
#   prlimit    (util-linux)   descriptor limits in the file and metrics-flood tests;
#   promtool   (prometheus)   deploy/tests: `promtool check rules` and `promtool test
#                             rules` on deploy/prometheus and the dashboard's queries.
# Installs only as root with apt-get (CI's machine, a fresh Debian machine); otherwise
# it says what to install and fails, since the tests need every one of them.
# Idempotent: says nothing and does nothing when everything is there.
set -euo pipefail

say() { printf 'system-deps: %s\n' "$*" >&2; }

# command -> Debian package
declare -A wanted=(
    [logrotate]=logrotate
    [ruby]=ruby
    [prlimit]=util-linux
    [promtool]=prometheus
)

have() { command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]]; }

missing=()
for command in "${!wanted[@]}"; do
    have "$command" || missing+=("${wanted[$command]}")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

# Only promtool is used from the `prometheus` package (no init system starts the
# server it also ships).
"$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" system-deps "${missing[@]}"
for command in "${!wanted[@]}"; do
    have "$command" || { say "error: $command still missing after installing ${wanted[$command]}"; exit 1; }
done
