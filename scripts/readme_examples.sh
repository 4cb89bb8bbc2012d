#!/usr/bin/env bash
# Runs the README's grpcurl examples, Rust client lines and Python snippet verbatim against a fresh `taskd dev` cluster on
# the README's ports (127.0.0.1:50051-50053), then stops it with Ctrl-C (SIGINT).
# Fails if any example line fails, if the documented error example does not fail as
# shown, or if the cluster does not stop cleanly. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/grpcurl.sh
. scripts/grpcurl.sh
grpcurl_ensure

# Under the test command, the same features as the tests: one build of taskd serves all.
cargo build --quiet --bin taskd ${TASKD_TEST_FEATURES:+--features "$TASKD_TEST_FEATURES"} && cargo build --quiet -p taskd-client --bin taskctl --example quickstart
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

# 50051-50053 lie in Linux's ephemeral port range: a port that some outgoing connection
# used a moment ago stays unbindable while that connection sits in TIME_WAIT (up to 60 s).
# So a start that fails with "Address already in use" is retried, within a bound.
start_deadline=$((SECONDS + 90))
while :; do
  NO_COLOR=1 RUST_BACKTRACE=0 target/debug/taskd dev --data-dir "$work/data" >"$work/dev.log" 2>&1 &
  dev_pid=$!
  until grep -q 'Ctrl-C' "$work/dev.log" || ! kill -0 "$dev_pid" 2>/dev/null || [ $SECONDS -ge $start_deadline ]; do sleep 0.1; done
  kill -0 "$dev_pid" 2>/dev/null && break
  wait "$dev_pid" || true
  dev_pid=
  if grep -q 'Address already in use' "$work/dev.log" && [ $SECONDS -lt $start_deadline ]; then
    echo "--- $(head -n 1 "$work/dev.log"); retrying"
    sleep 2
    continue
  fi
  echo "ERROR: taskd dev did not start; its log:" >&2
  tail -n 50 "$work/dev.log" >&2
  exit 1
done

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

# README.md's code between the <!-- NAME:start --> and <!-- NAME:end --> markers,
# without the fences, into FILE; fails if there is none.
readme_block() {
  sed -n "/<!-- $1:start/,/<!-- $1:end/p" README.md | sed '1d;$d' | sed '/^```/d' >"$2"
  [ -s "$2" ] || { echo "ERROR: no $1 block found in README.md" >&2; exit 1; }
}

# Runs the command after WHAT, its output kept in $work/last.out; on failure shows it.
run_or_fail() {
  local what=$1; shift
  echo "--- running $what"
  if ! "$@" >"$work/last.out" 2>&1; then
    cat "$work/last.out" >&2
    echo "ERROR: $what failed (above)" >&2
    exit 1
  fi
}

# The grpcurl examples and the Rust client lines, as written.
readme_block readme-examples "$work/examples.sh"
run_or_fail "the README's grpcurl lines" bash -euo pipefail -x "$work/examples.sh"
readme_block readme-rust "$work/rust.sh"
run_or_fail "the README's Rust client lines" bash -euo pipefail -x "$work/rust.sh"

# The Python snippet, in a fresh venv holding only `pip install ./clients/python`,
# run from another directory.
readme_block readme-python "$work/snippet.py"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check --no-input ./clients/python
run_or_fail "the README's Python snippet in a fresh venv" \
  bash -c 'cd "$1" && "$1/venv/bin/python" snippet.py' _ "$work"
grep -q '^gone:' "$work/last.out" || { echo "ERROR: the Python snippet did not get to its end:" >&2; cat "$work/last.out" >&2; exit 1; }

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
