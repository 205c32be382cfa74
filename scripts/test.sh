#!/usr/bin/env bash
# firetail's test command (README), also run by CI's .ci/run:
#   1. the Debian tools the tests use (scripts/system-deps.sh: logrotate, ruby, prlimit,
#      promtool) and the Python venv with moto's server (scripts/python-env.sh; both
#      no-ops when current),
#   2. every Rust test target (unit, property, integration against moto and the fake
#      Firehose), with FIRETAIL_MOTO_SERVER pointing at the venv's moto_server and
#      FIRETAIL_VENV_PYTHON at its python (sqlglot + DuckDB run firetail-query's SQL),
#   3. the deploy checks (pytest on deploy/tests), if there are any.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

scripts/system-deps.sh
scripts/python-env.sh

export FIRETAIL_MOTO_SERVER="$repo/.venv/bin/moto_server"
# The venv's interpreter, with sqlglot and duckdb: query/tests/it/engine.rs runs the SQL
# firetail-query builds through it. (Not FIRETAIL_PYTHON: python-env.sh reads that as the
# interpreter to make the venv with.)
export FIRETAIL_VENV_PYTHON="$repo/.venv/bin/python"
cargo test --locked --workspace --all-targets

if [[ -d deploy/tests ]]; then
    rc=0
    "$repo/.venv/bin/python" -m pytest -p no:cacheprovider deploy/tests || rc=$?
    if [[ $rc -eq 5 ]]; then
        echo "test.sh: pytest collected no tests in deploy/tests" >&2
    elif [[ $rc -ne 0 ]]; then
        exit "$rc"
    fi
fi
