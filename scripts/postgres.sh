#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, on loopback, in a data directory of our own.
#
#   scripts/postgres.sh start    install Debian's postgresql if absent (needs root), create the
#                                cluster on first use, start it, create role and database;
#                                prints the SQLAlchemy URL on stdout (progress goes to stderr)
#   scripts/postgres.sh stop     fast shutdown (immediate if that does not finish)
#   scripts/postgres.sh status   exit 0 if running
#   scripts/postgres.sh url      print the SQLAlchemy URL
#   scripts/postgres.sh destroy  stop and delete the data directory
#
# Settings (environment): MIC_PG_PORT (55432), MIC_PG_DIR (/tmp/mic-postgres-<port>),
# MIC_PG_USER (mic), MIC_PG_PASSWORD (mic), MIC_PG_DATABASE (mic_test); these three are limited
# to URL-safe characters (A-Z a-z 0-9 _ . ~ -).
# Run as root, the server runs as the `postgres` OS user, which owns MIC_PG_DIR; run as another
# user, it runs as that user.
set -euo pipefail

PORT="${MIC_PG_PORT:-55432}"
DIR="${MIC_PG_DIR:-/tmp/mic-postgres-${PORT}}"
DB_USER="${MIC_PG_USER:-mic}"
DB_PASSWORD="${MIC_PG_PASSWORD:-mic}"
DB_NAME="${MIC_PG_DATABASE:-mic_test}"
DATA="$DIR/data"
SOCKETS="$DIR/run"
LOG="$DIR/postgres.log"

note() { echo "postgres.sh: $*" >&2; }
die() { note "$*"; exit 1; }

# They appear verbatim in the printed URL, so they must need no escaping there.
for value in "$DB_USER" "$DB_PASSWORD" "$DB_NAME"; do
    [[ "$value" =~ ^[A-Za-z0-9_.~-]+$ ]] ||
        die "MIC_PG_USER, MIC_PG_PASSWORD and MIC_PG_DATABASE may only use A-Z a-z 0-9 _ . ~ -"
done
[[ "$PORT" =~ ^[0-9]+$ ]] || die "MIC_PG_PORT must be a number, got '$PORT'"

url() { echo "postgresql+psycopg://${DB_USER}:${DB_PASSWORD}@127.0.0.1:${PORT}/${DB_NAME}"; }

pg_bindir() {
    # The newest installed server version's binaries (Debian: /usr/lib/postgresql/<major>/bin).
    local candidate
    candidate="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$candidate" && -x "$candidate/pg_ctl" ]]; then
        echo "$candidate"
    fi
}

install_postgres() {
    [[ -n "$(pg_bindir)" ]] && return 0
    [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed and installing it needs root"
    note "installing Debian's postgresql (apt-get) ..."
    # Only our own cluster is wanted: no default 'main' cluster on port 5432.
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/mic-no-main-cluster.conf
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
    [[ -n "$(pg_bindir)" ]] || die "apt-get installed postgresql but no pg_ctl was found"
}

# Run a command as the server's OS user.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

prepare_dir() {
    mkdir -p "$DIR"
    if [[ "$(id -u)" == 0 ]]; then
        chown postgres: "$DIR"
        chmod 0750 "$DIR"
        as_owner test -w "$DIR" -a -x "$DIR" ||
            die "the postgres OS user cannot use $DIR (is a parent directory closed to others?)"
    fi
    as_owner mkdir -p "$SOCKETS"
}

is_running() {
    [[ -f "$DATA/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

init_cluster() {
    [[ -f "$DATA/PG_VERSION" ]] && return 0
    note "creating a cluster in $DATA"
    as_owner "$BIN/initdb" -D "$DATA" -U postgres -E UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 >>"$LOG.init" 2>&1 ||
        { tail -n 30 "$LOG.init" >&2; die "initdb failed"; }
    as_owner tee -a "$DATA/postgresql.conf" >/dev/null <<EOF
# mic-pipeline test server (scripts/postgres.sh); the port is given at start (-p)
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCKETS'
max_connections = 100
EOF
}

start_server() {
    if is_running; then
        note "already running ($DATA)"
        return 0
    fi
    if ! as_owner "$BIN/pg_ctl" start -D "$DATA" -l "$LOG" -w -t 60 -o "-p $PORT" >/dev/null; then
        tail -n 30 "$LOG" >&2 || true
        die "the server did not start (log: $LOG)"
    fi
}

create_role_and_database() {
    as_owner "$BIN/psql" -q -X -v ON_ERROR_STOP=1 -h "$SOCKETS" -p "$PORT" -U postgres -d postgres \
        -v user="$DB_USER" -v password="$DB_PASSWORD" -v database="$DB_NAME" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB', :'user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
ALTER ROLE :"user" PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
SQL
}

stop_server() {
    if ! is_running; then
        note "not running ($DATA)"
        return 0
    fi
    if ! as_owner "$BIN/pg_ctl" stop -D "$DATA" -m fast -w -t 60 >/dev/null; then
        note "fast shutdown did not finish; stopping immediately"
        as_owner "$BIN/pg_ctl" stop -D "$DATA" -m immediate -w -t 30 >/dev/null
    fi
    note "stopped ($DATA)"
}

command="${1:-}"
case "$command" in
start)
    install_postgres
    BIN="$(pg_bindir)"
    prepare_dir
    init_cluster
    start_server
    create_role_and_database
    note "running on 127.0.0.1:$PORT (data $DATA, log $LOG)"
    url
    ;;
stop | destroy)
    BIN="$(pg_bindir)"
    if [[ -n "$BIN" && -d "$DIR" ]]; then
        stop_server
    fi
    if [[ "$command" == destroy ]]; then
        rm -rf "$DIR"
        note "removed $DIR"
    fi
    ;;
status)
    BIN="$(pg_bindir)"
    if [[ -n "$BIN" ]] && is_running; then
        note "running on 127.0.0.1:$PORT ($DATA)"
    else
        note "not running ($DATA)"
        exit 1
    fi
    ;;
url)
    url
    ;;
*)
    echo "usage: $0 start|stop|status|url|destroy" >&2
    exit 2
    ;;
esac
