#!/usr/bin/env bash
# Runs the README's grpcurl examples verbatim against a fresh `taskd dev` cluster on
# the README's ports (127.0.0.1:50051-50053), then stops it with Ctrl-C (SIGINT).
# Fails if any example line fails, if the documented error example does not fail as
# shown, or if the cluster does not stop cleanly. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/grpcurl.sh
. scripts/grpcurl.sh
grpcurl_ensure

cargo build --quiet --bin taskd
work=$(mktemp -d)
dev_pid=
cleanup() {
  if [ -n "$dev_pid" ] && kill -0 "$dev_pid" 2>/dev/null; then kill -KILL "$dev_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

for port in 50051 50052 50053; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "ERROR: 127.0.0.1:$port is in use; the README examples need 50051-50053 free" >&2
    exit 1
  fi
done

target/debug/taskd dev --data-dir "$work/data" >"$work/dev.log" 2>&1 &
dev_pid=$!

# Wait (bounded) until every node reports SERVING.
deadline=$((SECONDS + 60))
for port in 50051 50052 50053; do
  until grpcurl -plaintext "127.0.0.1:$port" grpc.health.v1.Health/Check 2>/dev/null | grep -q SERVING; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "$dev_pid" 2>/dev/null; then
      echo "ERROR: taskd dev did not become SERVING on $port; its log:" >&2
      tail -n 50 "$work/dev.log" >&2
      exit 1
    fi
    sleep 0.2
  done
done

# The examples: the sh block between the readme-examples markers, as written.
sed -n '/<!-- readme-examples:start/,/<!-- readme-examples:end/p' README.md |
  sed '1d;$d' | sed '/^```/d' >"$work/examples.sh"
[ -s "$work/examples.sh" ] || { echo "ERROR: no examples found in README.md" >&2; exit 1; }
echo "--- running $(grep -c '^grpcurl\|^ID=' "$work/examples.sh") README example lines"
if ! bash -euo pipefail -x "$work/examples.sh" >"$work/examples.out" 2>&1; then
  cat "$work/examples.out" >&2
  echo "ERROR: a README example failed (above)" >&2
  exit 1
fi

# The documented error example fails, with the documented code and field.
error_line=$(grep -m1 '^\$ grpcurl .*"title": ""' README.md | sed 's/^\$ //')
if out=$(bash -c "$error_line" 2>&1); then
  echo "ERROR: the README's error example succeeded: $out" >&2; exit 1
fi
grep -q 'Code: InvalidArgument' <<<"$out" && grep -q '"field":"title"' <<<"$out" ||
  { echo "ERROR: the README's error example printed something else: $out" >&2; exit 1; }

kill -INT "$dev_pid"
deadline=$((SECONDS + 30))
while kill -0 "$dev_pid" 2>/dev/null; do
  [ $SECONDS -lt $deadline ] || { echo "ERROR: taskd dev did not stop on Ctrl-C" >&2; exit 1; }
  sleep 0.1
done
wait "$dev_pid" || { echo "ERROR: taskd dev exited with $? on Ctrl-C" >&2; tail -n 20 "$work/dev.log" >&2; exit 1; }
dev_pid=
echo "README examples: ok"
