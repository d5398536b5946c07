# Shared by the scripts that install and start the project's local services (sourced, not run).
# The sourcing script sets SCRIPT_NAME first; messages go to stderr, so stdout stays the script's answer.

log() { echo "${SCRIPT_NAME:-script}: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
as_root() { if [[ "$(id -u)" -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# apt_install WHAT PACKAGE...: install Debian packages quietly (apt-get update and a retry if the first
# attempt fails, as on a machine whose package lists were never fetched); on failure show apt's last lines.
apt_install() {
  local what="$1"; shift
  command -v apt-get >/dev/null 2>&1 || die "$what not found and apt-get is unavailable"
  log "$what not found; installing $* with apt-get..."
  local out rc=0
  out="$(mktemp)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends "$@" >"$out" 2>&1 || {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -q update >"$out" 2>&1 \
      && as_root env DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends "$@" >"$out" 2>&1
  } || rc=$?
  [[ $rc -eq 0 ]] || { tail -n 30 "$out" >&2; rm -f "$out"; die "apt-get install $* failed"; }
  rm -f "$out"
}
