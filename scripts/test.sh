#!/usr/bin/env bash
# firetail's test command (README), also run by CI's .ci/run:
#   1. the Debian tools the tests use (scripts/system-deps.sh: logrotate, ruby, prlimit,
#      promtool), the Python venv with moto's server (scripts/python-env.sh) and a
#      kubectl whose kustomize renders components (scripts/kubectl.sh; all three
#      no-ops when current),
#   2. the release build (`cargo build --release --locked`, a no-op after .ci/run's):
#      tests/it/memory.rs measures its peak RSS,
#   3. every Rust test target (unit, property, integration against moto and the fake
#      Firehose), with FIRETAIL_MOTO_SERVER pointing at the venv's moto_server and
#      FIRETAIL_VENV_PYTHON at its python (sqlglot + DuckDB run firetail-query's SQL),
#   4. the deploy checks (pytest on deploy/tests); collecting no test is a failure.
#
# A test that cannot build its real world (a mount refused, a tool missing) fails
# under CI=true; elsewhere it is skipped, never passed: the Rust tests print a line
# `firetail-test-skip: <test>: <why>` on stderr, pytest reports its skips (-rs).
# The run ends with how many tests were skipped, and why.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

scripts/system-deps.sh
scripts/python-env.sh
scripts/kubectl.sh

export FIRETAIL_MOTO_SERVER="$repo/.venv/bin/moto_server"
# The venv's interpreter, with sqlglot and duckdb: query/tests/it/engine.rs runs the SQL
# firetail-query builds through it. (Not FIRETAIL_PYTHON: python-env.sh reads that as the
# interpreter to make the venv with.)
export FIRETAIL_VENV_PYTHON="$repo/.venv/bin/python"
cargo build --release --locked

logs="$(mktemp -d)"

# What was skipped, and why: the Rust tests' lines, one a test, and pytest's -rs
# summary, whose "SKIPPED [N] <where>: <why>" counts N tests. Printed at the end,
# whatever happened.
report_skips() {
    local cargo_skips pytest_skips count
    cargo_skips="$(grep -aho 'firetail-test-skip: .*' "$logs/cargo.err" 2>/dev/null || true)"
    pytest_skips="$(grep -a '^SKIPPED \[' "$logs/pytest.out" 2>/dev/null || true)"
    count="$({
        [[ -n "$cargo_skips" ]] && wc -l <<<"$cargo_skips"
        sed -n 's/^SKIPPED \[\([0-9]*\)\].*/\1/p' <<<"$pytest_skips"
    } | awk '{ n += $1 } END { print n + 0 }')"
    echo "test.sh: $count tests skipped" >&2
    [[ -n "$cargo_skips" ]] && sed 's/^firetail-test-skip: /  cargo test: /' <<<"$cargo_skips" >&2
    [[ -n "$pytest_skips" ]] && sed 's/^/  pytest: /' <<<"$pytest_skips" >&2
    return 0
}
trap 'report_skips; rm -rf "$logs"' EXIT

# stderr through tee (the skip lines), stdout as it is.
{ cargo test --locked --workspace --all-targets 2>&1 1>&3 | tee "$logs/cargo.err" >&2; } 3>&1

rc=0
"$repo/.venv/bin/python" -m pytest -p no:cacheprovider -rs deploy/tests | tee "$logs/pytest.out" || rc=$?
if [[ $rc -eq 5 ]]; then
    echo "test.sh: pytest collected no tests in deploy/tests" >&2
fi
exit "$rc"
