#!/usr/bin/env bash
# veraPDF (PDF/A validation, 四性检测 可用性) for `archive-hub formats --validate`; no Docker, no installer.
#
#   scripts/verapdf.sh install   # fetch veraPDF from Maven Central (first time); prints ARCHIVE_HUB_VERAPDF's value
#   scripts/verapdf.sh path      # the value if installed (exit 1 otherwise)
#
# veraPDF's greenfield command line and its libraries are copied by `mvn dependency:copy-dependencies`
# (scripts/verapdf/pom.xml) into VERAPDF_HOME/lib (default <repo>/var/tools/verapdf-1.28.2). Java (8 or
# later) and Maven are installed from Debian when missing. ARCHIVE_HUB_VERAPDF is that directory; it may
# also name the `verapdf` launcher of an installed veraPDF.
#
# Only the value goes to stdout; all messages go to stderr.
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="1.28.2"
HOME_DIR="${VERAPDF_HOME:-$ROOT_DIR/var/tools/verapdf-$VERSION}"

SCRIPT_NAME=verapdf.sh
# shellcheck source=lib.sh
source "$ROOT_DIR/scripts/lib.sh"

installed() { [[ -f "$HOME_DIR/lib/greenfield-apps-$VERSION.jar" && -f "$HOME_DIR/.complete" ]]; }

install() {
  if installed; then echo "$HOME_DIR/lib"; return 0; fi
  command -v java >/dev/null 2>&1 || apt_install java default-jre-headless
  command -v mvn >/dev/null 2>&1 || apt_install mvn maven
  local tmp
  tmp="$(mktemp -d "${HOME_DIR%/*}/.verapdf-XXXXXX" 2>/dev/null || { mkdir -p "${HOME_DIR%/*}"; mktemp -d "${HOME_DIR%/*}/.verapdf-XXXXXX"; })"
  log "fetching veraPDF $VERSION from Maven Central..."
  if ! mvn -q -B -f "$ROOT_DIR/scripts/verapdf/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$tmp/lib" >"$tmp/mvn.log" 2>&1; then
    tail -n 30 "$tmp/mvn.log" >&2; rm -rf "$tmp"; die "mvn dependency:copy-dependencies failed"
  fi
  touch "$tmp/.complete"
  rm -rf "$HOME_DIR"
  mv "$tmp" "$HOME_DIR"  # whole or not at all: a killed install leaves only a .verapdf-* folder
  log "veraPDF $VERSION in $HOME_DIR/lib"
  echo "$HOME_DIR/lib"
}

case "${1:-}" in
  install) install ;;
  path) installed && echo "$HOME_DIR/lib" ;;
  *) die "usage: $0 install|path" ;;
esac
