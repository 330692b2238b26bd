#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for driftd's tests.
#
#   eval "$(.ci/postgres.sh [start] [DIR])"   start (or reuse) the server in DIR and print
#                                             export DRIFTD_TEST_PG_URL=... / DRIFTD_TEST_PG_DIR=...
#   .ci/postgres.sh stop [DIR]                stop it and delete DIR
#
# DIR defaults to $DRIFTD_PG_DIR, else /tmp/driftd-pg. It holds its own cluster
# (DIR/data), log and superuser password; the system cluster (pg_lsclusters,
# /var/lib/postgresql, port 5432) is never touched. Running `start` again on a
# live DIR reuses the server and prints the same URL, so the script is idempotent.
#
# The server listens on 127.0.0.1 only (no Unix socket), on $DRIFTD_PG_PORT if
# set, else on 55432 or the next free port. Connections need a password
# (scram-sha-256). The test role `driftd` (password `driftd`, CREATEDB, so tests
# can make a database per test) owns the database `driftd_test`.
#
# If initdb is missing, `postgresql` is apt-get installed (as root; set
# DRIFTD_PG_NO_INSTALL=1 to fail instead). PostgreSQL refuses to run as root, so
# as root the server runs as $DRIFTD_PG_OS_USER (default: postgres), which owns DIR.
# All progress goes to stderr; stdout carries only the export lines.
set -euo pipefail

ROLE=driftd
ROLE_PASSWORD=driftd
DATABASE=driftd_test
OS_USER=${DRIFTD_PG_OS_USER:-postgres}
MARKER=.driftd-pg

log() { echo "postgres.sh: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

usage() {
    sed -n '2,7p' "$0" >&2
    exit 2
}

cmd=start
case "${1:-}" in
start | stop)
    cmd=$1
    shift
    ;;
-h | --help) usage ;;
esac
[ $# -le 1 ] || usage
DIR=${1:-${DRIFTD_PG_DIR:-/tmp/driftd-pg}}
case "$DIR" in
/*) ;;
*) DIR="$PWD/$DIR" ;;
esac
DATA="$DIR/data"
# The server's user may not be able to enter the caller's working directory.
cd /

if [ "$(id -u)" -eq 0 ]; then
    IS_ROOT=1
else
    IS_ROOT=0
fi

# Run a command as the unprivileged user that owns the cluster.
as_pg() {
    if [ "$IS_ROOT" -eq 0 ]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u "$OS_USER" -- "$@"
    else
        su -s /bin/sh "$OS_USER" -c "$(printf '%q ' "$@")"
    fi
}

find_bindir() {
    local initdb d
    if initdb=$(command -v initdb 2>/dev/null); then
        d=$(dirname "$(readlink -f "$initdb")")
        if [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && [ -x "$d/psql" ]; then
            echo "$d"
            return 0
        fi
    fi
    # Debian keeps the server binaries off PATH, one directory per major version.
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && [ -x "$d/psql" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

ensure_postgres() {
    if BIN=$(find_bindir); then
        return 0
    fi
    [ "${DRIFTD_PG_NO_INSTALL:-0}" != 1 ] || die "PostgreSQL (initdb) is not installed (DRIFTD_PG_NO_INSTALL=1)"
    [ "$IS_ROOT" -eq 1 ] || die "PostgreSQL (initdb) is not installed; run as root to apt-get install it"
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL (initdb) is not installed and there is no apt-get"
    log "installing postgresql with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
    BIN=$(find_bindir) || die "apt-get installed postgresql but no initdb was found"
}

# 0 if something accepts connections on 127.0.0.1:$1.
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The pid in postmaster.pid, if that process exists and is not a zombie (a killed
# postmaster lingers as one where nothing reaps orphans, as in many containers).
live_postmaster_pid() {
    local pid state
    [ -f "$DATA/postmaster.pid" ] || return 1
    pid=$(head -n 1 "$DATA/postmaster.pid")
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state=$(sed 's/^.*) //' "/proc/$pid/stat" | cut -d ' ' -f 1)
    [ "$state" != Z ] && [ "$state" != X ] || return 1
    echo "$pid"
}

running() {
    live_postmaster_pid >/dev/null && as_pg "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

running_port() {
    sed -n 4p "$DATA/postmaster.pid"
}

psql_admin() {
    PGPASSWORD=$(cat "$DIR/superuser.pw") PGCONNECT_TIMEOUT=10 \
        "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres "${@:2}"
}

prepare_dir() {
    if [ -e "$DIR" ] && [ ! -e "$DIR/$MARKER" ] && [ -n "$(ls -A "$DIR")" ]; then
        die "$DIR exists, is not empty and was not made by this script; pick another directory"
    fi
    mkdir -p "$DIR"
    touch "$DIR/$MARKER"
    chmod 700 "$DIR"
    if [ "$IS_ROOT" -eq 1 ]; then
        id -u "$OS_USER" >/dev/null 2>&1 ||
            die "user $OS_USER does not exist; set DRIFTD_PG_OS_USER to an unprivileged user"
        chown -R "$OS_USER:" "$DIR"
        as_pg test -w "$DIR" ||
            die "$OS_USER cannot write $DIR (is a parent directory private?); use a path under /tmp"
    fi
}

init_cluster() {
    [ -f "$DATA/PG_VERSION" ] && return 0
    log "initdb $DATA ($("$BIN/postgres" --version))"
    rm -rf "$DATA"
    (
        umask 077
        od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$DIR/superuser.pw"
    )
    [ "$IS_ROOT" -eq 0 ] || chown "$OS_USER:" "$DIR/superuser.pw"
    as_pg "$BIN/initdb" -D "$DATA" -U postgres --pwfile="$DIR/superuser.pw" \
        --auth=scram-sha-256 -E UTF8 --no-locale --no-sync >"$DIR/initdb.log" 2>&1 || {
        cat "$DIR/initdb.log" >&2
        die "initdb failed"
    }
    # Local and throwaway: no Unix socket (nothing lands in /var/run/postgresql),
    # no durability (fast CREATE DATABASE per test).
    cat >>"$DATA/postgresql.conf" <<'EOF'

# driftd test server (.ci/postgres.sh)
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
shared_buffers = 32MB
# Databases live for one test; an autovacuum worker in one would make the test
# role's DROP DATABASE ... WITH (FORCE) fail (it may not terminate that worker).
autovacuum = off
EOF
}

start_server() {
    local port ports seen
    if running; then
        port=$(running_port)
        if as_pg "$BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 30; then
            log "reusing the server in $DIR on port $port"
            return 0
        fi
        die "the server in $DIR (port $port) does not accept connections; run: $0 stop $DIR"
    fi
    # Left by a killed server: postgres would take a zombie's pid for a live postmaster.
    live_postmaster_pid >/dev/null || rm -f "$DATA/postmaster.pid"
    if [ -n "${DRIFTD_PG_PORT:-}" ]; then
        ports=$DRIFTD_PG_PORT
    else
        ports=$(seq 55432 55531)
    fi
    for port in $ports; do
        if port_busy "$port"; then
            [ -z "${DRIFTD_PG_PORT:-}" ] || die "port $port (DRIFTD_PG_PORT) is in use"
            continue
        fi
        seen=0
        [ ! -f "$DIR/postgres.log" ] || seen=$(wc -l <"$DIR/postgres.log")
        if as_pg "$BIN/pg_ctl" start -D "$DATA" -l "$DIR/postgres.log" -w -t 60 -o "-p $port" >&2; then
            log "started PostgreSQL in $DIR on 127.0.0.1:$port"
            return 0
        fi
        # Lost a race for the port: try the next one; any other failure is fatal.
        if [ -n "${DRIFTD_PG_PORT:-}" ] ||
            ! sed -n "$((seen + 1)),\$p" "$DIR/postgres.log" | grep "could not bind" >/dev/null; then
            tail -n 30 "$DIR/postgres.log" >&2 || true
            die "pg_ctl start failed (log: $DIR/postgres.log)"
        fi
    done
    die "no free port in 55432-55531 (set DRIFTD_PG_PORT)"
}

ensure_role_and_database() {
    psql_admin "$1" -v role="$ROLE" -v pw="$ROLE_PASSWORD" -v db="$DATABASE" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB', :'role')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
}

do_start() {
    ensure_postgres
    prepare_dir
    init_cluster
    start_server
    local port
    port=$(running_port)
    ensure_role_and_database "$port"
    printf 'export DRIFTD_TEST_PG_URL=%q\n' "postgresql://$ROLE:$ROLE_PASSWORD@127.0.0.1:$port/$DATABASE"
    printf 'export DRIFTD_TEST_PG_DIR=%q\n' "$DIR"
}

do_stop() {
    if [ ! -e "$DIR" ]; then
        log "nothing to stop: $DIR does not exist"
        return 0
    fi
    [ -e "$DIR/$MARKER" ] || die "$DIR was not made by this script; not touching it"
    if [ -f "$DATA/postmaster.pid" ]; then
        BIN=$(find_bindir) || die "PostgreSQL binaries not found; cannot stop the server in $DIR"
        if running; then
            as_pg "$BIN/pg_ctl" stop -D "$DATA" -m fast -w -t 60 >&2
        fi
    fi
    rm -rf "$DIR"
    log "stopped and removed $DIR"
}

case "$cmd" in
start) do_start ;;
stop) do_stop ;;
esac
