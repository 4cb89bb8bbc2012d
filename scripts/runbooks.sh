#!/usr/bin/env bash
# Runs the README's "Operating a cluster" runbooks verbatim, in order, on real `taskd serve`
# processes on 127.0.0.1:50061 and up (SQLite data under a temp directory), while a writer
# keeps creating tasks (with request_ids) through whichever node answers. Between runbooks
# it checks what each one promised (voters, leader, tasks); at the end every acknowledged
# create must be on every member exactly once. Called by scripts/test.sh (step runbooks).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/grpcurl.sh
. scripts/grpcurl.sh
grpcurl_ensure

cargo build --quiet --bin taskd ${TASKD_TEST_FEATURES:+--features "$TASKD_TEST_FEATURES"}
bin_dir="${CARGO_TARGET_DIR:-$root/target}/debug"
export PATH="$bin_dir:$PATH"
export NO_COLOR=1 RUST_BACKTRACE=0

work=$(mktemp -d)
cleanup() {
  touch "$work/stop-writer" 2>/dev/null || true
  pkill -KILL -f 'taskd serve --node-id [0-9]+ --listen 127.0.0.1:500[67][0-9] ' 2>/dev/null || true
  # shellcheck disable=SC2046
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "${keep_work:-0}" = 1 ]; then echo "runbooks: logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

for port in 50061 50062 50063 50064 50065 50066 50071 50072 50073 50074; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "ERROR: 127.0.0.1:$port is in use; the runbooks need 50061-50066 and 50071 free" >&2
    exit 1
  fi
done

# The runbook NAME from README.md, without its fences.
runbook() {
  local file="$work/runbook-$1.sh"
  sed -n "/<!-- runbook-$1:start/,/<!-- runbook-$1:end/p" README.md | sed '1d;$d' | sed '/^```/d' >"$file"
  [ -s "$file" ] || { echo "ERROR: no runbook-$1 block in README.md" >&2; exit 1; }
  echo "$file"
}

# Runs runbook NAME in this shell (its `&` nodes stay this script's jobs), each line echoed;
# node output goes to $work/nodes.log.
run_runbook() {
  local file
  file=$(runbook "$1")
  echo
  echo "==> runbook $1"
  (cd "$work" && set -x && . "$file") >>"$work/nodes.log" 2>&1 || {
    keep_work=1
    echo "ERROR: runbook $1 failed; the last lines of its output:" >&2
    tail -n 40 "$work/nodes.log" >&2
    exit 1
  }
  echo "runbook $1: ok"
}

fail() {
  keep_work=1
  echo "ERROR: $*" >&2
  tail -n 30 "$work/nodes.log" >&2
  exit 1
}

status_json() { taskd cluster status --endpoints "$1" --output json; }

# Polls (60 s at most) until the voters the leader reports are exactly VOTERS (space-separated).
expect_voters() {
  local want=$1 endpoint=$2 got deadline=$((SECONDS + 60))
  while :; do
    got=$(status_json "$endpoint" 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(" ".join(str(m["node_id"]) for m in s["members"] if m["voter"]) if s["leader"] else "")' || true)
    [ "$got" = "$want" ] && { echo "voters: $got"; return 0; }
    [ $SECONDS -lt $deadline ] || fail "voters are [$got], expected [$want]"
    sleep 0.2
  done
}

# The ids of every task on the node at ADDR, read from its own copy (STALE), sorted.
task_ids() {
  local addr=$1 token="" page
  while :; do
    page=$(grpcurl -plaintext -d "{\"page_size\":1000,\"consistency\":\"READ_CONSISTENCY_STALE\",\"page_token\":\"$token\"}" \
      "$addr" taskd.v1.TaskService/ListTasks)
    echo "$page" | python3 -c 'import json,sys; [print(t["id"]) for t in json.load(sys.stdin).get("tasks", [])]'
    token=$(echo "$page" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("nextPageToken", ""))')
    [ -n "$token" ] || break
  done | sort
}

# The writer: one create at a time with a request_id, through the first node that answers,
# each acknowledged id appended to $work/acked.
writer() {
  local i=0 addr reply
  while [ ! -f "$work/stop-writer" ]; do
    i=$((i + 1))
    for addr in 127.0.0.1:50061 127.0.0.1:50062 127.0.0.1:50064 127.0.0.1:50063; do
      if reply=$(grpcurl -plaintext -max-time 5 -d "{\"title\":\"runbook write $i\",\"request_id\":\"runbook-$i\"}" \
        "$addr" taskd.v1.TaskService/CreateTask 2>/dev/null); then
        echo "$reply" | python3 -c 'import json,sys; print(json.load(sys.stdin)["task"]["id"])' >>"$work/acked"
        break
      fi
    done
    sleep 0.05
  done
}

# Waits until every node in ADDRS (space-separated) holds exactly the acknowledged creates.
expect_all_writes() {
  local addr deadline=$((SECONDS + 60))
  sort -u "$work/acked" >"$work/acked.sorted"
  [ "$(wc -l <"$work/acked.sorted")" = "$(wc -l <"$work/acked")" ] || fail "a create was acknowledged twice under two ids"
  for addr in "$@"; do
    until task_ids "$addr" >"$work/have" 2>/dev/null && diff -q "$work/acked.sorted" "$work/have" >/dev/null; do
      [ $SECONDS -lt $deadline ] || { diff "$work/acked.sorted" "$work/have" | head >&2; fail "$addr does not hold exactly the acknowledged creates"; }
      sleep 0.5
    done
    echo "$addr: all $(wc -l <"$work/acked.sorted") acknowledged creates, once each"
  done
}

touch "$work/acked"
run_runbook found
expect_voters "1 2 3" 127.0.0.1:50061
writer &
writer_pid=$!

# Node 3's machine dies.
pkill -KILL -f 'taskd serve --node-id 3 '
run_runbook replace
expect_voters "1 2 4" 127.0.0.1:50061

run_runbook grow
expect_voters "1 2 4 5 6" 127.0.0.1:50061

run_runbook shrink
expect_voters "1 2 4" 127.0.0.1:50061
while pgrep -f 'taskd serve --node-id [56] ' >/dev/null; do sleep 0.2; done

run_runbook rolling
expect_voters "1 2 4" 127.0.0.1:50061

touch "$work/stop-writer"
wait "$writer_pid"
[ "$(wc -l <"$work/acked")" -ge 5 ] || fail "the writer got only $(wc -l <"$work/acked") creates acknowledged"
expect_all_writes 127.0.0.1:50061 127.0.0.1:50062 127.0.0.1:50064

# Nodes 2 and 4 die for good: the majority is lost.
pkill -KILL -f 'taskd serve --node-id [24] '
run_runbook majority-lost
expect_voters "1" 127.0.0.1:50061
expect_all_writes 127.0.0.1:50061

run_runbook backup
expect_all_writes 127.0.0.1:50071

# The secured cluster: secret, TLS between everyone, tokens; alone, so that its
# SIGHUP reaches only its own node 1. Its commands run from the repository root.
pkill -KILL -f 'taskd serve --node-id [0-9]+ --listen 127.0.0.1:(5006[0-9]|50071) ' || true
ln -s "$root/deploy" "$work/deploy"
run_runbook secure
secure_ca="$work/secrets/ca.crt"
if grpcurl -plaintext -max-time 5 127.0.0.1:50072 grpc.health.v1.Health/Check >/dev/null 2>&1; then
  fail "a plaintext call to a TLS node succeeded"
fi
refused=$(grpcurl -cacert "$secure_ca" -max-time 5 -d '{"title":"no token"}' 127.0.0.1:50072 taskd.v1.TaskService/CreateTask 2>&1 || true)
grep -q 'Unauthenticated' <<<"$refused" || fail "a create without a token was not UNAUTHENTICATED: $refused"
refused=$(grpcurl -cacert "$secure_ca" -max-time 5 -H "authorization: Bearer $(cat "$work/secrets/reader.token")" \
  -d '{"title":"by a reader"}' 127.0.0.1:50072 taskd.v1.TaskService/CreateTask 2>&1 || true)
grep -q 'PermissionDenied' <<<"$refused" || fail "a reader's create was not PERMISSION_DENIED: $refused"
refused=$(grpcurl -cacert "$secure_ca" -max-time 5 -d '{"payload":""}' 127.0.0.1:50072 taskd.v1.RaftService/Vote 2>&1 || true)
grep -q 'Unauthenticated' <<<"$refused" || fail "a Vote without cluster credentials was not UNAUTHENTICATED: $refused"
grep -q 'SIGHUP: certificates and tokens reloaded' "$work/nodes.log" || {
  sleep_until=$((SECONDS + 10))
  until grep -q 'SIGHUP: certificates and tokens reloaded' "$work/nodes.log"; do
    [ $SECONDS -lt $sleep_until ] || fail "node 1 did not log its SIGHUP reload"
    sleep 0.2
  done
}
echo "secured cluster: plaintext, no token, a reader's write and an anonymous Vote were refused; SIGHUP reloaded"

echo "runbooks: every runbook ran verbatim; $(wc -l <"$work/acked") creates acknowledged across them, none lost or doubled"
