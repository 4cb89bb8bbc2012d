#!/usr/bin/env bash
# How taskd's costs grow, with `taskd bench` (see BENCHMARKS.md):
#   1. write throughput at 3 vs 5 nodes (create, 64 clients, SQLite)
#   2. a 60 s saturation run (create, 256 clients): leader_terms_elapsed must be 0
#   3. List latency (label filter, page of 100, 4 clients) at 10k / 100k / 1M tasks,
#      and the largest node's RSS at each size
#   4. kill -9 of the leader -> first acknowledged write, 10 kills, SQLite and MySQL
# Prints one JSON line per run (also kept in $OUT).
#
# Knobs: DURATION=10  SIZES="10000 100000 1000000"  KILLS=10  SATURATION=60
#        MYSQL_URL=mysql://root@127.0.0.1:3306  SKIP_MYSQL=1  OUT=FILE
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-10}
SIZES=${SIZES:-"10000 100000 1000000"}
KILLS=${KILLS:-10}
SATURATION=${SATURATION:-60}
MYSQL_URL=${MYSQL_URL:-mysql://root@127.0.0.1:3306}
MYSQL_URL=${MYSQL_URL%/}
OUT=${OUT:-$(mktemp /tmp/scaling.XXXXXX.jsonl)}

say() { echo "scaling: $*" >&2; }
(cd "$ROOT" && cargo build --release --bin taskd)
WORK=$(mktemp -d /tmp/scaling.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# A copy: another build into the same target dir must not swap it mid-run.
TASKD=$WORK/taskd
cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/taskd" "$TASKD"

run() {
  say "taskd bench $*"
  "$TASKD" bench "$@" --output json | tail -n 1 | tee -a "$OUT"
}

for n in 3 5; do
  run --nodes "$n" --workload create --clients 64 --duration "$DURATION"
done
run --nodes 3 --workload create --clients 256 --duration "$SATURATION"
for size in $SIZES; do
  run --nodes 3 --workload list --clients 4 --duration "$DURATION" --preload "$size"
done
run --nodes 3 --workload failover --kills "$KILLS"
if [[ ${SKIP_MYSQL:-0} != 1 ]]; then
  run --nodes 3 --workload failover --kills "$KILLS" \
    --database-url-template "$MYSQL_URL/bench_n{id}"
fi
say "JSON lines in $OUT"
