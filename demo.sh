#!/usr/bin/env bash
# firetail end to end, on this machine only (127.0.0.1), in one command:
#
#   builds firetail, makes the Python venv (moto, boto3), starts moto's server as a
#   local Firehose + S3, creates a delivery stream into a bucket, lets a "Rails app"
#   write a JSON access log (some lines before firetail starts, the rest while it
#   runs), stops the app, sends firetail SIGTERM as Kubernetes would, waits for it to
#   drain and exit, then compares the log with what landed in S3.
#
# Exits 0 only if no line was lost and firetail exited 0. Duplicates are allowed
# (at-least-once) and reported.
#
# Knobs (environment): DEMO_LINES_BEFORE (1500), DEMO_LINES_DURING (2500),
# DEMO_RATE lines/s while firetail runs (500), DEMO_KEEP=1 keeps the work directory,
# FIRETAIL_BIN uses that binary instead of building target/release/firetail.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$repo"

lines_before="${DEMO_LINES_BEFORE:-1500}"
lines_during="${DEMO_LINES_DURING:-2500}"
rate="${DEMO_RATE:-500}"
stream="firetail-demo-access-log"
bucket="firetail-demo-logs"
drain_timeout_s=10

step() { printf '==> %s\n' "$*"; }
now() { date +%s.%N; }

work=""
moto_pid=""
firetail_pid=""
app_pid=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$app_pid" ]]; then
        kill "$app_pid" 2>/dev/null || true
        wait "$app_pid" 2>/dev/null || true
    fi
    if [[ -n "$firetail_pid" ]] && kill -0 "$firetail_pid" 2>/dev/null; then
        kill -KILL "$firetail_pid" 2>/dev/null || true
        wait "$firetail_pid" 2>/dev/null || true
    fi
    if [[ -n "$moto_pid" ]] && kill -0 "$moto_pid" 2>/dev/null; then
        kill "$moto_pid" 2>/dev/null || true
        wait "$moto_pid" 2>/dev/null || true
    fi
    if [[ -n "$work" && -d "$work" ]]; then
        if [[ $rc -eq 0 && "${DEMO_KEEP:-0}" != 1 ]]; then
            rm -rf "$work"
        else
            echo "(logs and files kept in $work)" >&2
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. build ------------------------------------------------------------------------
if [[ -n "${FIRETAIL_BIN:-}" ]]; then
    firetail="$FIRETAIL_BIN"
    step "using $firetail"
else
    if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    step "building firetail (cargo build --release --locked)"
    cargo build --release --locked
    firetail="$repo/target/release/firetail"
fi
[[ -x "$firetail" ]] || { echo "no firetail binary at $firetail" >&2; exit 1; }

# --- 2. Python: moto + boto3 ------------------------------------------------------------
step "Python venv with moto and boto3 (scripts/python-env.sh)"
scripts/python-env.sh
py="$repo/.venv/bin/python"
helper() { "$py" "$repo/scripts/demo_helper.py" "$@"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/firetail-demo.XXXXXX")"
app_dir="$work/app"            # the emptyDir the app and firetail share
mkdir -p "$app_dir"
log="$app_dir/access.log"
checkpoint="$app_dir/.firetail-access.log.json"

# --- 3. moto: a local Firehose and S3 ---------------------------------------------------
moto_port="$(helper free-port)"
endpoint="http://127.0.0.1:$moto_port"
step "starting moto_server on $endpoint"
"$repo/.venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
if ! helper wait-moto --endpoint "$endpoint" --timeout 30; then
    echo "moto_server did not start; its output:" >&2
    tail -n 30 "$work/moto.log" >&2
    exit 1
fi
step "creating S3 bucket $bucket and Firehose delivery stream $stream"
helper setup --endpoint "$endpoint" --stream "$stream" --bucket "$bucket"

# --- 4. the app starts writing before firetail is there ----------------------------------
step "app writes $lines_before lines to $log before firetail starts"
helper write-log --path "$log" --lines "$lines_before" --seed 42 --start 0 --ruby-header

# --- 5. firetail --------------------------------------------------------------------------
metrics_port="$(helper free-port)"
step "starting firetail (metrics on 127.0.0.1:$metrics_port)"
env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN -u AWS_DEFAULT_REGION \
    -u AWS_ENDPOINT_URL_FIREHOSE -u AWS_ROLE_ARN -u AWS_WEB_IDENTITY_TOKEN_FILE \
    -u AWS_CONTAINER_CREDENTIALS_FULL_URI -u AWS_CONTAINER_CREDENTIALS_RELATIVE_URI \
    AWS_ENDPOINT_URL="$endpoint" \
    AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=testing \
    AWS_SECRET_ACCESS_KEY=testing \
    AWS_EC2_METADATA_DISABLED=true \
    AWS_CONFIG_FILE=/dev/null \
    AWS_SHARED_CREDENTIALS_FILE=/dev/null \
    NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost \
    RUST_LOG="${RUST_LOG:-info}" \
    "$firetail" \
    --path "$log" \
    --stream "$stream" \
    --checkpoint "$checkpoint" \
    --flush-interval 1s \
    --drain-timeout "${drain_timeout_s}s" \
    --drain-quiet 1s \
    --read-from beginning \
    --metrics-addr "127.0.0.1:$metrics_port" \
    --log-format text \
    >"$work/firetail.log" 2>&1 &
firetail_pid=$!

# The pod's startup probe: the app goes on only once firetail is ready.
if ! helper wait-http --url "http://127.0.0.1:$metrics_port/readyz" --timeout 30; then
    if ! kill -0 "$firetail_pid" 2>/dev/null; then
        wait "$firetail_pid" && rc=0 || rc=$?
        echo "firetail exited with $rc before it was ready; its log:" >&2
    else
        echo "firetail is running but /readyz never answered 200; its log:" >&2
    fi
    tail -n 30 "$work/firetail.log" >&2
    exit 1
fi

# --- 6. the app keeps writing while firetail ships ----------------------------------------
step "app writes $lines_during more lines at ~$rate lines/s while firetail runs"
# (in the background + wait, so that a Ctrl-C or SIGTERM to this script acts at once)
"$py" "$repo/scripts/demo_helper.py" write-log \
    --path "$log" --lines "$lines_during" --rate "$rate" --seed 42 --start "$lines_before" &
app_pid=$!
wait "$app_pid"
app_pid=""

# --- 7. the app has exited: the kubelet sends the sidecar SIGTERM --------------------------
step "app stopped; sending firetail SIGTERM and waiting for it to drain"
t0="$(now)"
early=""
if ! kill -TERM "$firetail_pid" 2>/dev/null; then
    early=" (it had already exited before SIGTERM)"
fi
# terminationGracePeriodSeconds-like bound: drain timeout plus a margin, then SIGKILL.
deadline=$(( $(date +%s) + drain_timeout_s + 20 ))
while kill -0 "$firetail_pid" 2>/dev/null && (( $(date +%s) < deadline )); do
    sleep 0.1
done
killed=""
if kill -0 "$firetail_pid" 2>/dev/null; then
    kill -KILL "$firetail_pid" 2>/dev/null || true
    killed=" (still running $((drain_timeout_s + 20)) s after SIGTERM: SIGKILLed)"
fi
firetail_rc=0
wait "$firetail_pid" || firetail_rc=$?
firetail_pid=""
drain_s="$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')"

# --- 8. what reached S3? -------------------------------------------------------------------
echo
echo "firetail's last log lines:"
tail -n 5 "$work/firetail.log" | sed -e $'s/\x1b\\[[0-9;]*m//g' -e 's/^/  | /'
echo
echo "==== firetail demo summary ===="
count_rc=0
helper count --endpoint "$endpoint" --bucket "$bucket" --log "$log" --json "$work/summary.json" ||
    count_rc=$?
if [[ -n "$early" ]]; then
    printf '%-26s %s\n' "firetail exit code" "$firetail_rc$early"
else
    printf '%-26s %s\n' "firetail exit code" "$firetail_rc  (exited ${drain_s} s after SIGTERM)$killed"
fi

if [[ $count_rc -ne 0 ]]; then
    echo "RESULT: FAIL: lines were lost (see above)"
    exit 1
elif [[ $firetail_rc -ne 0 || -n "$killed$early" ]]; then
    echo "RESULT: FAIL: every line reached S3, but firetail exited $firetail_rc$killed$early"
    exit 1
fi
echo "RESULT: OK: every line the app wrote is in S3"
