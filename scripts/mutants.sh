#!/usr/bin/env bash
# Mutation testing of the pure cores (docs/development.md): cargo-mutants changes their
# code one small way at a time and checks that their crate's unit tests fail. Not run by
# CI: it rebuilds and reruns the unit tests once per mutant, so a group takes from ten
# minutes (query) to about an hour (each of the others) on two busy cores.
#
#   scripts/mutants.sh [query] [tail] [core] [batcher]     (all four by default)
#
# Needs `cargo install --locked cargo-mutants`. Reports go to target/mutants-out/<group>/
# (missed.txt lists the mutants no test caught); the exit status is non-zero when any
# mutant was missed or timed out. Exclusions, each with its reason: .cargo/mutants.toml.
#
# cargo-mutants builds a copy of the tree; CARGO_TARGET_DIR (default target/mutants)
# keeps the dependencies compiled between mutants and runs. A warm copy of target/debug
# there saves the first build of every dependency.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/mutants}"

# Only the library's unit tests (`-C --lib` builds and runs no integration test).
common=(--test-tool cargo -j1 -C --lib --minimum-test-timeout 90)

run() {
    local group="$1"
    shift
    local out="target/mutants-out/$group"
    echo "== $group: cargo mutants ${common[*]} -o $out $*" >&2
    nice -n 10 cargo mutants "${common[@]}" -o "$out" "$@"
}

# The groups outside batch/ skip batch's tests, which are most of the library's test
# time (the batcher's property test); every other unit test runs. Running fewer tests
# can only leave more mutants uncaught, never hide one.
skip_batch=(-- -- --skip batch::)

groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(query tail core batcher)
status=0
for g in "${groups[@]}"; do
    case "$g" in
    query) run query -p firetail-query -f query/src/sql.rs ;;
    tail)
        run tail -p firetail -f src/tail/framing.rs -f src/tail/identity.rs \
            -f src/config/values.rs "${skip_batch[@]}"
        ;;
    core)
        run core -p firetail -f src/progress.rs -f src/ship/answer.rs \
            -f src/checkpoint/format.rs "${skip_batch[@]}"
        ;;
    batcher) run batcher -p firetail -f src/batch/batcher.rs ;;
    *)
        echo "unknown group $g (query, tail, core or batcher)" >&2
        exit 2
        ;;
    esac || status=1
done
exit "$status"
