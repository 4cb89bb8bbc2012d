#!/usr/bin/env bash
# Regenerates the Python client's checked-in gRPC stubs from proto/, reproducibly:
#   scripts/gen_python.sh
#
# Uses a pinned grpcio-tools (its protoc and its protobuf runtime) from a venv under
# target/tools/venv-gen, writes clients/python/src/taskd_client/_proto/taskd/v1/
# {taskd_pb2.py, taskd_pb2.pyi, taskd_pb2_grpc.py}, and rewrites the generated absolute
# import (`from taskd.v1 import taskd_pb2`) into a package-relative one, so the package
# imports from any working directory. Running it twice yields identical files.
# google.protobuf's well-known types (Timestamp, FieldMask) come from the protobuf runtime.
#
# Bumping GRPCIO_TOOLS_VERSION changes the generated code's minimum runtime versions:
# keep the lower bounds in clients/python/pyproject.toml in step (see the header of the
# generated files: "Protobuf Python Version" and GRPC_GENERATED_VERSION).
set -euo pipefail
cd "$(dirname "$0")/.."

GRPCIO_TOOLS_VERSION=1.85.1

venv=target/tools/venv-gen
out=clients/python/src/taskd_client/_proto
log() { printf '[gen_python] %s\n' "$*" >&2; }

installed=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("grpcio-tools"))' 2>/dev/null || true)
if [ "$installed" != "$GRPCIO_TOOLS_VERSION" ]; then
  log "installing grpcio-tools==$GRPCIO_TOOLS_VERSION into $venv"
  mkdir -p target/tools
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
    "grpcio-tools==$GRPCIO_TOOLS_VERSION" >&2
fi

rm -rf "$out/taskd"
mkdir -p "$out/taskd/v1"
"$venv/bin/python" -m grpc_tools.protoc -Iproto \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  proto/taskd/v1/taskd.proto

# Absolute `from taskd.v1 import taskd_pb2` → package-relative.
sed -i -E 's/^from taskd\.v1 import (taskd_pb2)( as .*)?$/from . import \1\2/' \
  "$out/taskd/v1/taskd_pb2_grpc.py"
if grep -nE '^(from|import) taskd(\.| )' "$out"/taskd/v1/*.py "$out"/taskd/v1/*.pyi; then
  log "ERROR: an absolute taskd import is left in the generated code (see above)"
  exit 1
fi

# Packages (empty __init__.py files, so setuptools and type checkers see them).
for d in "$out" "$out/taskd" "$out/taskd/v1"; do
  : > "$d/__init__.py"
done
log "generated $(cd "$out/taskd/v1" && ls | tr '\n' ' ')with grpcio-tools $GRPCIO_TOOLS_VERSION"
