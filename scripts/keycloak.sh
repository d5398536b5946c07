#!/usr/bin/env bash
# Keycloak 26 for archive-hub's single sign-on (sso/), in dev mode on a free loopback port; no Docker.
#
#   scripts/keycloak.sh start           # install (first time), start with the archive-hub realm; prints its issuer URL
#   scripts/keycloak.sh stop
#   scripts/keycloak.sh status          # "running <issuer>" (exit 0) or "stopped" (exit 3)
#   scripts/keycloak.sh password USER   # a demo user's password (a username, or archivist | auditor | clerk | admin)
#
# The server is the Maven artifact org.keycloak:keycloak-quarkus-dist (zip), fetched with `mvn dependency:copy`
# into KEYCLOAK_HOME (default <repo>/var/tools/keycloak-<version>); Java and Maven come from Debian when
# missing. It runs `start-dev` with an in-memory database, so every start imports sso/realm/archive-hub.json
# afresh: realm roles archivist and auditor, the bearer-only client archive-hub-api (the audience the HTTP API
# checks) and the public client archive-hub-cli, the five 销毁清册 signatory roles (signatory-unit-head, ...), and
# demo users (zhang.archivist, liu.auditor, wang.clerk with no archive role, one per signatory role).
# Their passwords and the bootstrap admin's are generated on first start into
# KEYCLOAK_STATE_DIR/secrets.env (mode 600, default <repo>/var/keycloak) and handed to Keycloak through the
# realm file's ${...} placeholders; they are never printed except by `password`.
#
# Only the answer goes to stdout; all messages go to stderr.
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="26.7.3"
HOME_DIR="${KEYCLOAK_HOME:-$ROOT_DIR/var/tools/keycloak-$VERSION}"
STATE_DIR="${KEYCLOAK_STATE_DIR:-$ROOT_DIR/var/keycloak}"
REALM_FILE="$ROOT_DIR/sso/realm/archive-hub.json"
REALM="archive-hub"
START_TIMEOUT_S=300

SCRIPT_NAME=keycloak.sh
# shellcheck source=lib.sh
source "$ROOT_DIR/scripts/lib.sh"

installed() { [[ -f "$HOME_DIR/bin/kc.sh" && -f "$HOME_DIR/.complete" ]]; }

install() {
  installed && return 0
  command -v java >/dev/null 2>&1 || apt_install java default-jre-headless
  command -v mvn >/dev/null 2>&1 || apt_install mvn maven
  mkdir -p "${HOME_DIR%/*}"
  local tmp
  tmp="$(mktemp -d "${HOME_DIR%/*}/.keycloak-XXXXXX")"
  log "fetching Keycloak $VERSION from Maven Central..."
  if ! mvn -q -B dependency:copy -Dartifact="org.keycloak:keycloak-quarkus-dist:$VERSION:zip" \
      -DoutputDirectory="$tmp" >"$tmp/mvn.log" 2>&1; then
    tail -n 30 "$tmp/mvn.log" >&2; rm -rf "$tmp"; die "mvn dependency:copy of keycloak-quarkus-dist failed"
  fi
  python3 -m zipfile -e "$tmp/keycloak-quarkus-dist-$VERSION.zip" "$tmp/unpacked"
  chmod +x "$tmp/unpacked/keycloak-$VERSION/bin/"*.sh
  touch "$tmp/unpacked/keycloak-$VERSION/.complete"
  rm -rf "$HOME_DIR"
  mv "$tmp/unpacked/keycloak-$VERSION" "$HOME_DIR"  # whole or not at all
  rm -rf "$tmp"
  log "Keycloak $VERSION in $HOME_DIR"
}

secrets() {
  # One generated password per user the realm file names (ARCHIVE_HUB_KC_PASSWORD_<USERNAME>) and the bootstrap
  # admin's; a name missing from an older file is added, the others are kept.
  mkdir -p "$STATE_DIR"
  (umask 077; python3 - "$REALM_FILE" "$STATE_DIR/secrets.env" <<'EOF'
import json, os, re, secrets, sys
realm_file, path = sys.argv[1:]
names = ["KC_BOOTSTRAP_ADMIN_PASSWORD"] + [
    "ARCHIVE_HUB_KC_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", u["username"].upper())
    for u in json.load(open(realm_file, encoding="utf-8"))["users"]
]
have = {}
if os.path.exists(path):
    for line in open(path, encoding="utf-8"):
        key, _, value = line.rstrip("\n").partition("=")
        have[key] = value
missing = [n for n in names if n not in have]
if missing:
    for name in missing:
        have[name] = secrets.token_urlsafe(18)
    with open(path + ".partial", "w", encoding="utf-8") as fh:
        fh.writelines(f"{k}={v}\n" for k, v in have.items())
    os.replace(path + ".partial", path)
EOF
  )
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

answers() {  # the realm's discovery document answers at this issuer
  python3 - "$1" <<'EOF' 2>/dev/null
import json, sys, urllib.request
issuer = sys.argv[1]
with urllib.request.urlopen(issuer + "/.well-known/openid-configuration", timeout=3) as r:
    sys.exit(0 if json.load(r).get("issuer") == issuer else 1)
EOF
}

running_pid() {
  local pid
  pid="$(cat "$STATE_DIR/pid" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

status() {
  local issuer
  issuer="$(cat "$STATE_DIR/issuer" 2>/dev/null || true)"
  if running_pid >/dev/null && [[ -n "$issuer" ]] && answers "$issuer"; then
    echo "running $issuer"; return 0
  fi
  echo "stopped"; return 3
}

start() {
  local line
  if line="$(status)"; then echo "${line#running }"; return 0; fi
  install
  secrets
  local port issuer pid
  port="$(free_port)"
  issuer="http://127.0.0.1:$port/realms/$REALM"
  mkdir -p "$HOME_DIR/data/import"
  cp "$REALM_FILE" "$HOME_DIR/data/import/$REALM.json"
  log "starting Keycloak $VERSION on 127.0.0.1:$port (log: $STATE_DIR/keycloak.log)..."
  (
    set -a
    # shellcheck disable=SC1091
    source "$STATE_DIR/secrets.env"
    set +a
    export KC_BOOTSTRAP_ADMIN_USERNAME=admin
    cd "$HOME_DIR"
    exec setsid bash bin/kc.sh start-dev --db=dev-mem --http-host=127.0.0.1 --http-port="$port" \
      --hostname-strict=false --import-realm >"$STATE_DIR/keycloak.log" 2>&1 </dev/null
  ) &
  pid=$!
  echo "$pid" >"$STATE_DIR/pid"
  echo "$issuer" >"$STATE_DIR/issuer"
  local waited=0
  until answers "$issuer"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$STATE_DIR/keycloak.log" >&2; die "Keycloak exited before it answered"
    fi
    (( waited >= START_TIMEOUT_S )) && { tail -n 40 "$STATE_DIR/keycloak.log" >&2; stop; die "Keycloak did not answer within ${START_TIMEOUT_S}s"; }
    sleep 1; waited=$((waited + 1))
  done
  log "Keycloak answers after ${waited}s"
  echo "$issuer"
}

stop() {
  local pid
  if pid="$(running_pid)"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$STATE_DIR/pid" "$STATE_DIR/issuer"
}

password() {
  secrets
  local user="${1:-}"
  case "$user" in
    archivist) user=zhang.archivist ;;
    auditor) user=liu.auditor ;;
    clerk) user=wang.clerk ;;
    admin) sed -n "s/^KC_BOOTSTRAP_ADMIN_PASSWORD=//p" "$STATE_DIR/secrets.env"; return 0 ;;
    "") die "usage: $0 password archivist|auditor|clerk|admin|USERNAME" ;;
  esac
  local name
  name="ARCHIVE_HUB_KC_PASSWORD_$(printf '%s' "$user" | tr '[:lower:]' '[:upper:]' | tr -c 'A-Z0-9' '_')"
  grep -q "^$name=" "$STATE_DIR/secrets.env" || die "no demo user $user in $REALM_FILE"
  sed -n "s/^$name=//p" "$STATE_DIR/secrets.env"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  password) password "${2:-}" ;;
  *) die "usage: $0 start|stop|status|password USER" ;;
esac
