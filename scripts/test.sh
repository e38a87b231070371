#!/usr/bin/env bash
# The test command (README; .ci/run calls it). On a fresh machine it:
#   1. creates .venv and installs the project (scripts/bootstrap.sh),
#   2. fetches the Kafka broker's jars once (into MIC_CACHE_DIR) and starts a broker of its own
#      with a fresh state directory under a temporary directory,
#   3. starts a PostgreSQL server of its own (scripts/postgres.sh, installing it if absent) and
#      installs Chromium for the browser test if absent (scripts/install_browser.sh),
#   4. runs `ruff check .`, `mypy` and `pytest` with MIC_KAFKA_BOOTSTRAP, MIC_TEST_POSTGRES_URL
#      and MIC_REQUIRE_INFRA=1 (a missing service fails a test instead of skipping it), in two
#      stages without arguments: the default suite (`-m 'not faults and not bench'`, under 15
#      minutes), then the long stage (`-m 'faults or bench'`, under 30: the crash and handover
#      scenarios, the 3-broker cluster the tests start themselves, the bench harness's smoke run),
#   5. stops everything it started, also on failure or interrupt.
# Arguments are passed to one pytest run instead of the two stages (e.g. `scripts/test.sh -k topics
# -x`, `scripts/test.sh -m faults`).
# Exit status: pytest's, or 1 if pytest passed but ruff or mypy did not.
#
# Environment: MIC_TEST_KAFKA_PORT (default 39092, or a free port if that is taken),
# MIC_TEST_PG_PORT (default 55432, likewise), MIC_TEST_KEEP_LOGS=1 keeps the temporary
# directory (broker and server logs) even when everything passed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SECONDS=0
log() { echo "test.sh [${SECONDS}s]: $*" >&2; }

bash scripts/bootstrap.sh
PY="$ROOT/.venv/bin/python"
CLI="$ROOT/.venv/bin/mic-pipeline"

# A port that is free now (with port+1 for the broker's controller), preferring $1.
free_port() {
    "$PY" - "$1" "$2" <<'PYTHON'
import socket
import sys

preferred, width = int(sys.argv[1]), int(sys.argv[2])


def free(port: int) -> bool:
    for candidate in range(port, port + width):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                return False
    return True


port = preferred
while not free(port):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if port + width > 65535:
        port = preferred + 10
print(port)
PYTHON
}

RUN_DIR="$(mktemp -d /tmp/mic-test.XXXXXX)"
chmod 0755 "$RUN_DIR" # the postgres OS user must reach its data directory inside
kafka_started=0
postgres_started=0
cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    if [[ "$kafka_started" == 1 ]] && ! "$CLI" kafka stop >&2; then
        # the CLI itself failed (e.g. an import error): stop the broker by its pid file
        local pid_file="$MIC_STATE_DIR/kafka/broker.pid"
        if [[ -f "$pid_file" ]]; then
            local pid
            pid="$(cat "$pid_file")"
            kill "$pid" 2>/dev/null && timeout 30 tail --pid="$pid" -f /dev/null
            kill -9 "$pid" 2>/dev/null
            log "stopped the broker (pid $pid) by its pid file"
        fi
    fi
    if [[ "$postgres_started" == 1 ]]; then
        bash scripts/postgres.sh stop
    fi
    if [[ "$status" == 0 && "${MIC_TEST_KEEP_LOGS:-0}" != 1 ]]; then
        rm -rf "$RUN_DIR"
    else
        rm -rf "$RUN_DIR"/state-*/kafka/data "$RUN_DIR"/postgres-*/data
        log "logs kept in $RUN_DIR"
    fi
    log "done, exit status $status"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Start a service, choosing another free port when its port was taken in the meantime (other
# runs and developers share this machine); any other failure ends the run at once.
start_kafka() {
    local attempt
    for attempt in 1 2 3; do
        export MIC_STATE_DIR="$RUN_DIR/state-$attempt"
        export MIC_KAFKA_BOOTSTRAP="127.0.0.1:${MIC_TEST_KAFKA_PORT:-$(free_port 39092 2)}"
        log "starting Kafka on $MIC_KAFKA_BOOTSTRAP (state $MIC_STATE_DIR)"
        kafka_started=1
        if "$CLI" kafka start 2>&1 | tee "$RUN_DIR/kafka-start.log" >&2; then # pipefail: start's status
            return 0
        fi
        grep -q "already in use" "$RUN_DIR/kafka-start.log" && [[ -z "${MIC_TEST_KAFKA_PORT:-}" ]] || return 1
    done
    return 1
}

start_postgres() {
    local attempt
    for attempt in 1 2 3; do
        export MIC_PG_PORT="${MIC_TEST_PG_PORT:-$(free_port 55432 1)}" MIC_PG_DIR="$RUN_DIR/postgres-$attempt"
        log "starting PostgreSQL on 127.0.0.1:$MIC_PG_PORT"
        postgres_started=1
        if MIC_TEST_POSTGRES_URL="$(bash scripts/postgres.sh start 2>"$RUN_DIR/postgres-start.log")"; then
            cat "$RUN_DIR/postgres-start.log" >&2
            export MIC_TEST_POSTGRES_URL
            return 0
        fi
        cat "$RUN_DIR/postgres-start.log" >&2
        grep -q "already in use" "$RUN_DIR/postgres-start.log" && [[ -z "${MIC_TEST_PG_PORT:-}" ]] || return 1
        bash scripts/postgres.sh destroy || true
    done
    return 1
}

start_kafka
start_postgres
if [[ -f scripts/install_browser.sh ]]; then
    log "Chromium for the web page's browser test (scripts/install_browser.sh)"
    bash scripts/install_browser.sh
fi
# promtool for the alert rules' test (Debian's prometheus package) and the AsyncAPI parser for the
# AsyncAPI document's test (npm, pinned, cached in $MIC_CACHE_DIR/asyncapi); each only when absent.
if ! command -v promtool >/dev/null 2>&1; then
    log "installing Debian's prometheus package (promtool, for tests/test_alerts.py)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
fi
ASYNCAPI_PARSER="@asyncapi/parser@3.6.6"
asyncapi_dir="${MIC_CACHE_DIR:-$HOME/.cache/mic-pipeline}/asyncapi"
if ! grep -qs '"version": "3.6.6"' "$asyncapi_dir/node_modules/@asyncapi/parser/package.json"; then
    if ! command -v npm >/dev/null 2>&1; then
        log "installing Debian's nodejs and npm (for the AsyncAPI parser)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    log "installing $ASYNCAPI_PARSER into $asyncapi_dir (tests/test_asyncapi.py)"
    mkdir -p "$asyncapi_dir"
    npm install --prefix "$asyncapi_dir" --no-audit --no-fund --loglevel=error "$ASYNCAPI_PARSER" >&2
fi
export MIC_REQUIRE_INFRA=1

lint_status=0
log "ruff check ."
"$ROOT/.venv/bin/ruff" check . || lint_status=1
log "mypy"
"$ROOT/.venv/bin/mypy" || lint_status=1
pytest_status=0
if [[ $# -gt 0 ]]; then
    log "pytest $*"
    "$PY" -m pytest "$@" || pytest_status=$?
else
    # Stage 1, the default suite (budget 15 min): everything but the long stage's tests.
    log "stage 1: pytest -m 'not faults and not bench'"
    "$PY" -m pytest -m "not faults and not bench" --durations=25 || pytest_status=$?
    # Stage 2, the long stage (budget 30 min): the pipeline's kill -9 and handover scenarios on
    # this broker, broker faults on a 3-broker cluster that the tests start themselves
    # (tests/faults_cluster.py) under $RUN_DIR/faults, and the bench harness's smoke run. It runs
    # even when stage 1 failed (its verdict is independent); no test collected (exit 5) fails too.
    stage2_status=0
    log "stage 2: pytest -m 'faults or bench'"
    MIC_FAULTS_DIR="$RUN_DIR/faults" "$PY" -m pytest -m "faults or bench" --durations=15 || stage2_status=$?
    log "stage 1 exit status $pytest_status, stage 2 exit status $stage2_status"
    [[ "$pytest_status" != 0 ]] || pytest_status="$stage2_status"
fi
if [[ "$pytest_status" != 0 ]]; then
    exit "$pytest_status"
fi
if [[ "$lint_status" != 0 ]]; then
    log "pytest passed but ruff or mypy reported problems"
    exit 1
fi
exit 0
