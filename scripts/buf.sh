#!/usr/bin/env bash
# Runs the pinned buf CLI, installing it first if needed, from the repo root:
#   scripts/buf.sh lint
#   scripts/buf.sh breaking --against '.git#branch=main'
#
# buf comes from PyPI (package buf-bin) into a venv under target/tools/, or from npm
# (@bufbuild/buf) when pip cannot deliver it. TASKD_BUF_VIA=npm forces npm.
# Sourced by scripts/test.sh, which calls buf_ensure and then "$BUF".

BUF_VERSION=${BUF_VERSION:-1.75.0}

_buf_log() { printf '[buf] %s\n' "$*" >&2; }

# Sets BUF to a working buf $BUF_VERSION under target/tools, installing it if needed.
buf_ensure() {
  local root tools
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  tools="$root/target/tools"
  mkdir -p "$tools"
  export BUF_CACHE_DIR="$tools/buf-cache"

  local venv="$tools/venv-buf" npmdir="$tools/npm-buf" cand
  for cand in "$venv/bin/buf" "$npmdir/node_modules/.bin/buf"; do
    if [ -x "$cand" ] && [ "$("$cand" --version 2>/dev/null)" = "$BUF_VERSION" ]; then
      BUF=$cand; return 0
    fi
  done

  if [ "${TASKD_BUF_VIA:-pip}" != npm ]; then
    _buf_log "installing buf-bin==$BUF_VERSION from PyPI into $venv"
    if { [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2; } &&
       "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
         "buf-bin==$BUF_VERSION" >&2 &&
       [ "$("$venv/bin/buf" --version 2>/dev/null)" = "$BUF_VERSION" ]; then
      BUF="$venv/bin/buf"; return 0
    fi
    _buf_log "PyPI install failed; trying npm"
  fi

  if command -v npm >/dev/null 2>&1; then
    _buf_log "installing @bufbuild/buf@$BUF_VERSION from npm into $npmdir"
    mkdir -p "$npmdir"
    if npm install --prefix "$npmdir" --no-save --no-audit --no-fund --loglevel=error \
         "@bufbuild/buf@$BUF_VERSION" >&2 &&
       [ "$("$npmdir/node_modules/.bin/buf" --version 2>/dev/null)" = "$BUF_VERSION" ]; then
      BUF="$npmdir/node_modules/.bin/buf"; return 0
    fi
  fi
  _buf_log "ERROR: could not install buf $BUF_VERSION (pip package buf-bin, npm package @bufbuild/buf)"
  return 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  buf_ensure
  cd "$(dirname "$0")/.."
  exec "$BUF" "$@"
fi
