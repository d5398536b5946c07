#!/usr/bin/env bash
# Local PostgreSQL server for archive-hub development and tests (no Docker).
#
#   scripts/postgres.sh start   # init (first time) + start; prints the SQLAlchemy URL on stdout
#   scripts/postgres.sh stop    # fast shutdown
#   scripts/postgres.sh url     # prints the URL if the server is running (exit 1 otherwise)
#   scripts/postgres.sh status  # "running <port> <url>" (exit 0) or "stopped" (exit 3)
#
# Environment:
#   PGDATA_DIR   data directory (default: <repo>/var/postgres/data)
#   PGPORT       TCP port to use on start (default: previous port if free, else a free one)
#   PG_OS_USER   unprivileged OS user used when running as root (default: archivehub_pg)
#
# Only the URL goes to stdout; all messages go to stderr.
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="$ROOT_DIR/var/postgres"
DATA_DIR="$(realpath -m "${PGDATA_DIR:-$STATE_DIR/data}")"
PORT_FILE="$STATE_DIR/port"
LOCK_FILE="$STATE_DIR/.lock"
PG_OS_USER="${PG_OS_USER:-archivehub_pg}"
DB_USER="archive_hub"
DATABASES=(archive_hub airflow)

SCRIPT_NAME=postgres.sh
# shellcheck source=lib.sh
source "$ROOT_DIR/scripts/lib.sh"

url_for() { echo "postgresql+psycopg://${DB_USER}@127.0.0.1:$1/archive_hub"; }

# ---------------------------------------------------------------- binaries
find_bindir() {
  local d
  # newest major version first
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -n -r); do
    if [[ -x "$d/postgres" && -x "$d/pg_ctl" && -x "$d/initdb" ]]; then
      echo "$d"
      return 0
    fi
  done
  if command -v pg_ctl >/dev/null 2>&1; then
    d="$(dirname "$(command -v pg_ctl)")"
    if [[ -x "$d/postgres" && -x "$d/initdb" ]]; then
      echo "$d"
      return 0
    fi
  fi
  return 1
}

ensure_binaries() {
  if BIN_DIR="$(find_bindir)"; then
    return 0
  fi
  apt_install "PostgreSQL server binaries" postgresql  # this can take a minute
  BIN_DIR="$(find_bindir)" || die "postgresql installed but server binaries not found under /usr/lib/postgresql/*/bin"
}

# ------------------------------------------------------------ run-as user
IS_ROOT=0
[[ "$(id -u)" -eq 0 ]] && IS_ROOT=1

ensure_os_user() {
  [[ $IS_ROOT -eq 1 ]] || return 0
  if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    log "creating system user $PG_OS_USER (postgres refuses to run as root)"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
      --user-group "$PG_OS_USER" 2>/dev/null \
      || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_OS_USER" \
      || die "could not create user $PG_OS_USER"
  fi
}

# Run a PostgreSQL server-side binary as the unprivileged user when we are root.
# fd 9 (the start/stop lock) is closed so the postmaster does not inherit the lock.
run_pg() {
  if [[ $IS_ROOT -eq 1 ]]; then
    if command -v runuser >/dev/null 2>&1; then
      runuser -u "$PG_OS_USER" -- "$@" 9>&-
    else
      su -s /bin/sh "$PG_OS_USER" -c "$(printf '%q ' "$@")" 9>&-
    fi
  else
    "$@" 9>&-
  fi
}

# --------------------------------------------------------------- helpers
is_running() {
  [[ -f "$DATA_DIR/PG_VERSION" ]] || return 1
  run_pg "$BIN_DIR/pg_ctl" status -D "$DATA_DIR" >/dev/null 2>&1
}

running_port() {
  # Line 4 of postmaster.pid is the port.
  sed -n '4p' "$DATA_DIR/postmaster.pid" 2>/dev/null | tr -d '[:space:]'
}

port_is_free() {
  local p="$1"
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$p" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
  else
    # Nothing answering on it -> treat as free.
    ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null
  fi
}

pick_port() {
  if [[ -n "${PGPORT:-}" ]]; then
    echo "$PGPORT"
    return 0
  fi
  local prev=""
  [[ -f "$PORT_FILE" ]] && prev="$(tr -d '[:space:]' <"$PORT_FILE")"
  if [[ "$prev" =~ ^[0-9]+$ ]] && port_is_free "$prev"; then
    echo "$prev"
    return 0
  fi
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return 0
  fi
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if port_is_free "$p"; then echo "$p"; return 0; fi
  done
  die "could not find a free port"
}

socket_dir() {
  # Unix socket paths are limited to ~107 bytes; fall back to a private dir under /tmp.
  local d="$DATA_DIR/run"
  if (( ${#d} + 20 > 100 )); then
    d="/tmp/archive-hub-pg-$(printf '%s' "$DATA_DIR" | cksum | cut -d' ' -f1)"
  fi
  echo "$d"
}

psql_q() {
  local port="$1"; shift
  "$BIN_DIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$DB_USER" -d postgres "$@"
}

ensure_databases() {
  local port="$1" db exists
  for db in "${DATABASES[@]}"; do
    exists="$(psql_q "$port" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")"
    if [[ "$exists" != "1" ]]; then
      log "creating database $db"
      psql_q "$port" -c "CREATE DATABASE \"$db\"" >/dev/null
    fi
  done
}

write_port_file() {
  mkdir -p "$STATE_DIR"
  echo "$1" >"$PORT_FILE"
}

# -------------------------------------------------------------- commands
init_cluster() {
  [[ -f "$DATA_DIR/PG_VERSION" ]] && return 0
  log "initialising cluster in $DATA_DIR"
  mkdir -p "$DATA_DIR"
  if [[ -n "$(ls -A "$DATA_DIR")" ]]; then
    die "$DATA_DIR exists, is not empty and is not a PostgreSQL data directory"
  fi
  if [[ $IS_ROOT -eq 1 ]]; then
    chown "$PG_OS_USER:" "$DATA_DIR"
    run_pg test -w "$DATA_DIR" \
      || die "$PG_OS_USER cannot write $DATA_DIR (check permissions of its parent directories)"
  fi
  chmod 700 "$DATA_DIR"
  local out rc=0
  out="$(mktemp)"
  chmod 644 "$out"
  run_pg "$BIN_DIR/initdb" -D "$DATA_DIR" --auth=trust -U "$DB_USER" --encoding=UTF8 --locale=C \
    >"$out" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    cat "$out" >&2
    rm -f "$out"
    die "initdb failed"
  fi
  rm -f "$out"
}

cmd_start() {
  ensure_binaries
  ensure_os_user
  if is_running; then
    local port
    port="$(running_port)"
    write_port_file "$port"
    url_for "$port"
    return 0
  fi
  init_cluster
  if [[ $IS_ROOT -eq 1 ]]; then
    chown -R "$PG_OS_USER:" "$DATA_DIR"
  fi

  local port sock logf rc=0
  port="$(pick_port)"
  sock="$(socket_dir)"
  logf="$DATA_DIR/server.log"
  run_pg mkdir -p "$sock"
  run_pg chmod 700 "$sock"
  log "starting PostgreSQL ($BIN_DIR) on 127.0.0.1:$port, data $DATA_DIR, log $logf"
  local out log_offset=0
  [[ -f "$logf" ]] && log_offset="$(stat -c %s "$logf")"
  out="$(run_pg "$BIN_DIR/pg_ctl" start -w -t 60 -D "$DATA_DIR" -l "$logf" \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $sock" 2>&1)" || rc=$?
  if [[ $rc -ne 0 ]]; then
    log "pg_ctl start failed (exit $rc): $out"
    log "server log ($logf) of this attempt:"
    tail -c "+$((log_offset + 1))" "$logf" 2>/dev/null | tail -n 30 >&2 || true
    exit 1
  fi
  ensure_databases "$port"
  write_port_file "$port"
  url_for "$port"
}

cmd_stop() {
  BIN_DIR="$(find_bindir)" || { log "not running (binaries not installed)"; return 0; }
  if ! is_running; then
    log "not running"
    return 0
  fi
  run_pg "$BIN_DIR/pg_ctl" stop -w -D "$DATA_DIR" -m fast >/dev/null
  log "stopped"
}

cmd_url() {
  BIN_DIR="$(find_bindir)" || die "PostgreSQL binaries not installed"
  if is_running; then
    url_for "$(running_port)"
  else
    log "not running (use: scripts/postgres.sh start)"
    exit 1
  fi
}

cmd_status() {
  BIN_DIR="$(find_bindir)" || { echo "stopped (binaries not installed)"; exit 3; }
  if is_running; then
    local port
    port="$(running_port)"
    echo "running $port $(url_for "$port")"
  else
    echo "stopped"
    exit 3
  fi
}

with_lock() {
  mkdir -p "$STATE_DIR"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$LOCK_FILE"
    flock -w 300 9 || die "timed out waiting for $LOCK_FILE"
  fi
  "$@"
}

case "${1:-}" in
  start) with_lock cmd_start ;;
  stop) with_lock cmd_stop ;;
  url) cmd_url ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start|stop|url|status" >&2
    exit 2
    ;;
esac
