#!/usr/bin/env bash
# Local ClamAV daemon (clamd) for archive-hub's 病毒检测 (四性检测, 安全性), for tests and trials; no Docker.
#
#   scripts/clamav.sh start   # install clamav-daemon (first time), start clamd; prints ARCHIVE_HUB_CLAMD's value
#   scripts/clamav.sh stop
#   scripts/clamav.sh url     # the value if clamd is running (exit 1 otherwise)
#
# Environment: CLAMAV_STATE_DIR (default <repo>/var/clamav: config, database, socket, log),
# CLAMAV_STREAM_MAX (default 200M: the largest file clamd accepts on INSTREAM).
#
# Signatures: this machine has no route to ClamAV's mirrors, so freshclam cannot fetch the official
# databases. The clamd started here loads var/clamav/db/, which holds one signature of our own: the EICAR
# anti-virus test string, anywhere in a file (ArchiveHub.Test.EICAR). That is enough to show the whole path
# (scan, refusal, quarantine reason) with the real engine. In production, point ARCHIVE_HUB_CLAMD at a
# clamd whose databases freshclam keeps current; nothing else changes.
#
# Only the URL goes to stdout; all messages go to stderr.
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${CLAMAV_STATE_DIR:-$ROOT_DIR/var/clamav}"
SOCKET="$STATE_DIR/clamd.sock"
if (( ${#SOCKET} > 100 )); then  # a unix socket path has at most 107 bytes: a deep checkout gets one in /tmp
  SOCKET="/tmp/archive-hub-clamd-$(printf '%s' "$STATE_DIR" | sha1sum | cut -c1-12).sock"
fi
PID_FILE="$STATE_DIR/clamd.pid"
EICAR='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'

SCRIPT_NAME=clamav.sh
# shellcheck source=lib.sh
source "$ROOT_DIR/scripts/lib.sh"

ensure_clamd() {
  command -v clamd >/dev/null 2>&1 && return 0
  [[ -x /usr/sbin/clamd ]] && return 0
  apt_install clamd clamav-daemon
}

clamd_bin() { command -v clamd 2>/dev/null || echo /usr/sbin/clamd; }

answers() {  # clamd answers PING on the socket
  [[ -S "$SOCKET" ]] || return 1
  python3 - "$SOCKET" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
try:
    s.connect(sys.argv[1])
    s.sendall(b"zPING\0")
    sys.exit(0 if s.recv(16).startswith(b"PONG") else 1)
except OSError:
    sys.exit(1)
EOF
}

write_config() {
  mkdir -p "$STATE_DIR/db" "$STATE_DIR/tmp"
  python3 - "$STATE_DIR/db/archive-hub-test.ndb" "$EICAR" <<'EOF'
import sys
# .ndb: name:target type (0 = any file):offset (* = anywhere):hex
open(sys.argv[1], "w").write(f"ArchiveHub.Test.EICAR:0:*:{sys.argv[2].encode().hex()}\n")
EOF
  cat >"$STATE_DIR/clamd.conf" <<EOF
Foreground no
LocalSocket $SOCKET
PidFile $PID_FILE
DatabaseDirectory $STATE_DIR/db
TemporaryDirectory $STATE_DIR/tmp
LogFile $STATE_DIR/clamd.log
StreamMaxLength ${CLAMAV_STREAM_MAX:-200M}
MaxFileSize 200M
MaxScanSize 400M
SelfCheck 0
EOF
}

start() {
  if answers; then echo "unix://$SOCKET"; return 0; fi
  ensure_clamd
  write_config
  rm -f "$SOCKET"
  "$(clamd_bin)" -c "$STATE_DIR/clamd.conf" >&2 || die "clamd did not start (see $STATE_DIR/clamd.log)"
  for _ in $(seq 1 150); do
    if answers; then echo "unix://$SOCKET"; return 0; fi
    sleep 0.2
  done
  tail -n 20 "$STATE_DIR/clamd.log" >&2 || true
  die "clamd did not answer on $SOCKET within 30 s"
}

stop() {
  [[ -f "$PID_FILE" ]] || return 0
  kill "$(cat "$PID_FILE")" 2>/dev/null || true
  for _ in $(seq 1 50); do answers || break; sleep 0.1; done
  rm -f "$PID_FILE" "$SOCKET"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) answers && echo "unix://$SOCKET" ;;
  *) die "usage: $0 start|stop|url" ;;
esac
