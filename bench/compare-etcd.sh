#!/usr/bin/env bash
# Compare taskd with etcd on this machine, with the same load generator
# (`taskd bench`, built with --features etcd) and the same closed loop:
#
#   etcd         a 3-member etcd on loopback (default durability), KV Put / Range
#   taskd-mysql  `taskd bench --nodes 3` on MySQL (one database per node)
#   taskd-sqlite `taskd bench --nodes 3` on SQLite
#
# for the workloads create and get at 1, 16, 64 and 256 clients, and prints a
# markdown table (plus one of server CPU and memory). Every run's JSON line is
# kept in $OUT (printed at the end).
#
# Knobs (environment):
#   QUICK=1          2 s runs after 1 s warmup, clients 1 and 16, preload 2000
#   DURATION=10      seconds measured per run        WARMUP=2   seconds before
#   CLIENTS="1 16 64 256"                            WORKLOADS="create get"
#   PRELOAD=10000    tasks / keys created before a get run
#   MYSQL_URL=mysql://root@127.0.0.1:3306   server for taskd-mysql (databases bench_n1..3)
#   SKIP_MYSQL=1     leave taskd-mysql out
#   OUT=FILE         where the JSON lines go (default: a temp file)
#
# Needs root for apt-get (etcd-server, protobuf-compiler) when they are missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ ${QUICK:-0} == 1 ]]; then
  DURATION=${DURATION:-2} WARMUP=${WARMUP:-1} CLIENTS=${CLIENTS:-"1 16"} PRELOAD=${PRELOAD:-2000}
fi
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CLIENTS=${CLIENTS:-"1 16 64 256"}
WORKLOADS=${WORKLOADS:-"create get"}
PRELOAD=${PRELOAD:-10000}
MYSQL_URL=${MYSQL_URL:-mysql://root@127.0.0.1:3306}
MYSQL_URL=${MYSQL_URL%/}
SKIP_MYSQL=${SKIP_MYSQL:-0}

say() { echo "compare-etcd: $*" >&2; }

# --- tools ---------------------------------------------------------------
missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

say "building taskd (release, --features etcd)"
(cd "$ROOT" && cargo build --release --features etcd --bin taskd)
BUILT="${CARGO_TARGET_DIR:-$ROOT/target}/release/taskd"
[[ -x $BUILT ]] || { say "no binary at $BUILT"; exit 1; }

WORK=$(mktemp -d /tmp/compare-etcd.XXXXXX)
# A copy: another build into the same target dir must not swap it mid-run.
TASKD=$WORK/taskd
cp "$BUILT" "$TASKD"
"$TASKD" bench --help >/dev/null || { say "$BUILT has no bench subcommand (another build?)"; exit 1; }
OUT=${OUT:-$WORK/results.jsonl}
: >"$OUT"
ETCD_PIDS=()
cleanup() {
  for pid in "${ETCD_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${ETCD_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  # Keep the results when they live in the work dir.
  if [[ $OUT == "$WORK"/* ]]; then
    find "$WORK" -mindepth 1 -not -path "$OUT" -delete 2>/dev/null || true
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- etcd: 3 members on free loopback ports --------------------------------
read -r -a PORTS < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)
CLIENT_PORTS=("${PORTS[@]:0:3}")
PEER_PORTS=("${PORTS[@]:3:3}")
INITIAL=""
for i in 1 2 3; do
  INITIAL+="${INITIAL:+,}m$i=http://127.0.0.1:${PEER_PORTS[i-1]}"
done
ENDPOINTS=""
for i in 1 2 3; do
  cp=${CLIENT_PORTS[i-1]} pp=${PEER_PORTS[i-1]}
  ENDPOINTS+="${ENDPOINTS:+,}127.0.0.1:$cp"
  etcd --name "m$i" --data-dir "$WORK/etcd-m$i" \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "$INITIAL" --initial-cluster-state new --initial-cluster-token "bench-$$" \
    --logger zap --log-level warn >"$WORK/etcd-m$i.log" 2>&1 &
  ETCD_PIDS+=($!)
done
say "etcd members on $ENDPOINTS (pids ${ETCD_PIDS[*]})"
python3 - "$ENDPOINTS" <<'EOF'
import json, sys, time, urllib.request
deadline = time.time() + 30
for ep in sys.argv[1].split(","):
    while True:
        try:
            with urllib.request.urlopen(f"http://{ep}/health", timeout=1) as r:
                if json.load(r).get("health") == "true":
                    break
        except Exception:
            pass
        if time.time() > deadline:
            sys.exit(f"compare-etcd: etcd at {ep} not healthy after 30 s")
        time.sleep(0.1)
EOF
ETCD_PID_LIST=$(IFS=,; echo "${ETCD_PIDS[*]}")

# --- runs ------------------------------------------------------------------
# run SYSTEM BENCH-ARGS…: one bench run; its JSON line, tagged with SYSTEM, into $OUT.
run() {
  local system=$1
  shift
  say "$system: taskd bench $*"
  local line
  line=$("$TASKD" bench "$@" --duration "$DURATION" --warmup "$WARMUP" --preload "$PRELOAD" \
    --output json | tail -n 1)
  python3 -c 'import json,sys; r=json.loads(sys.argv[2]); r["system"]=sys.argv[1]; print(json.dumps(r))' \
    "$system" "$line" >>"$OUT"
}

MARIADB_PIDS=$(pgrep -d, -x mariadbd || pgrep -d, -x mysqld || true)
for workload in $WORKLOADS; do
  for clients in $CLIENTS; do
    run etcd --target etcd --endpoints "$ENDPOINTS" --server-pids "$ETCD_PID_LIST" \
      --workload "$workload" --clients "$clients"
    if [[ $SKIP_MYSQL != 1 ]]; then
      # The MySQL server's CPU counts as taskd's too (etcd's storage is in-process).
      run taskd-mysql --nodes 3 --database-url-template "$MYSQL_URL/bench_n{id}" \
        ${MARIADB_PIDS:+--server-pids "$MARIADB_PIDS"} --workload "$workload" --clients "$clients"
    fi
    run taskd-sqlite --nodes 3 --workload "$workload" --clients "$clients"
  done
done

# --- the tables --------------------------------------------------------------
python3 - "$OUT" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = {(r["system"], r["workload"], r["clients"]): r for r in rows}
systems = ["etcd", "taskd-mysql", "taskd-sqlite"]
keys = sorted({(r["workload"], r["clients"]) for r in rows}, key=lambda k: (k[0], k[1]))

def cell(r, field, fmt):
    return fmt.format(r[field]) if r and r.get(field) is not None else "–"

def ratio(a, b, field):
    if not a or not b or not b.get(field):
        return "–"
    return f"{a[field] / b[field]:.2f}"

head = ["workload", "clients"]
for s in systems:
    head += [f"{s} ops/s", f"{s} p99 ms"]
head += ["mysql/etcd ops", "sqlite/etcd ops", "mysql/etcd p99", "sqlite/etcd p99"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for w, c in keys:
    e, m, s = (by.get((sys_, w, c)) for sys_ in systems)
    cells = [w, str(c)]
    for r in (e, m, s):
        cells += [cell(r, "ops_per_s", "{:.0f}"), cell(r, "p99_ms", "{:.2f}")]
    cells += [ratio(m, e, "ops_per_s"), ratio(s, e, "ops_per_s"),
              ratio(m, e, "p99_ms"), ratio(s, e, "p99_ms")]
    print("| " + " | ".join(cells) + " |")

print()
head = ["workload", "clients"] + [f"{s} CPU-s/1k ops" for s in systems] + [f"{s} RSS MiB" for s in systems]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for w, c in keys:
    rs = [by.get((sys_, w, c)) for sys_ in systems]
    cells = [w, str(c)]
    cells += [cell(r, "server_cpu_s_per_1k_ops", "{:.3f}") for r in rs]
    cells += [cell(r, "server_rss_mb", "{:.0f}") for r in rs]
    print("| " + " | ".join(cells) + " |")
print("\ntaskd-mysql's CPU and RSS include mariadbd's (the RSS is the largest process: usually mariadbd).")
errors = [(r["system"], r["workload"], r["clients"], r["errors"]) for r in rows if r["errors"]]
for e in errors:
    print(f"\nerrors in {e[0]} {e[1]} x{e[2]}: {e[3]}")
EOF
say "JSON lines: $OUT"
