#!/usr/bin/env bash
# taskd's one test command: every check and every test, all set-up included.
#
#   ./scripts/test.sh                    set up, lint, build once, run every test
#   ./scripts/test.sh --setup-only       only the set-up steps (toolchain, MySQL, buf lint)
#   ./scripts/test.sh -- ARGS...         pass ARGS to the test runner (a filter, say)
#
# Steps, in order (each prints a "==> " header):
#   toolchain  cargo with rustfmt and clippy (rustup adds missing components)
#   mysql      a MySQL for the tests, exported as TASKD_TEST_MYSQL_URL (see scripts/mysql.sh:
#              $TASKD_TEST_MYSQL_URL, else root@127.0.0.1:3306, else a throwaway mariadbd,
#              else FAIL: MySQL tests are never skipped)
#   buf        buf lint, and buf breaking against HEAD~1 and the proto's first commit
#              (buf from PyPI/npm into target/tools, see scripts/buf.sh)
#   fmt        cargo fmt --all -- --check
#   clippy     cargo clippy --workspace --all-targets --features "$TASKD_TEST_FEATURES" -- -D warnings
#   runbooks   scripts/runbooks.sh: the README's "Operating a cluster" runbooks, verbatim,
#              on taskd serve processes on 127.0.0.1:50061-50066 under a writer
#   codegen    scripts/gen_python.sh, then fail if the Python client's generated stubs differ
#              from the committed ones (run the script and commit its output)
#   prev-release  the previous release's taskd for the upgrade tests, built once and cached
#              under target/prev-release/ (scripts/prev_release.sh; the tests build it
#              themselves, under the same lock, when run alone); started in the background
#              after the README step, waited for before the tests
#   (at the end: the wall time of each step)
#   test       cargo nextest run --workspace --all-targets --features "$TASKD_TEST_FEATURES" if
#              cargo-nextest is installed, else cargo test with the same arguments
#              (TASKD_TEST_RUNNER=cargo|nextest forces one)
#   fuzz       every cargo-fuzz target (fuzz/) for TASKD_FUZZ_SECONDS (30) each, from the
#              committed corpus; any crash fails (scripts/fuzz.sh, cargo-fuzz in target/tools)
#   readme     the README's grpcurl lines, verbatim, against `taskd dev` (scripts/readme_examples.sh)
#   python     the Python client's pytest suite (clients/python/tests) in target/tools/venv-py,
#              against 3 real `taskd serve` processes of `cargo build --bin taskd`
#   chaos      taskd-chaos (needs root, ip, nft, mariadbd: apt-installed if missing): a seeded
#              fault schedule on MySQL that must pass, then a broken-on-purpose taskd
#              (--break stale-reads) that must be caught; outputs in target/chaos/
#
# Knobs: TASKD_TEST_MYSQL_URL, TASKD_TEST_MYSQL_PROBE_PORT (default 3306; "off" skips the
# probe), TASKD_TEST_MYSQL_PORT (first port for the throwaway server, default 33306),
# TASKD_TEST_RUNNER, TASKD_BUF_VIA=npm, TASKD_CHAOS_SEED (default 1), TASKD_CHAOS_DURATION
# (default 120s), TASKD_CHAOS_NEMESIS (default kill,pause,partition,mysql-kill,membership).
# TASKD_TEST_RUNNER, TASKD_BUF_VIA=npm, TASKD_TEST_FEATURES (cargo features of the clippy and
# test steps; default taskd/failpoints,taskd/chaos-break, so target/debug/taskd carries the
# crash points that tests/it/crash_points.rs sets through FAILPOINTS and the chaos step's
# --break switch, from one build).
#
# Leaves nothing running: a throwaway mariadbd is stopped and deleted on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/mysql.sh
. scripts/mysql.sh
# shellcheck source=scripts/buf.sh
. scripts/buf.sh

export RUST_BACKTRACE=1
# Tests compare golden files here, never rewrite them: the golden tests refuse
# UPDATE_GOLDEN when TASKD_TEST_COMMAND is set (clients/rust/tests/taskctl.rs).
export TASKD_TEST_COMMAND=1
if [ -n "${UPDATE_GOLDEN+set}" ]; then
  echo "ERROR: UPDATE_GOLDEN is set; the test command only compares golden files." \
    "Unset it (rewrite them with: UPDATE_GOLDEN=1 cargo test -p taskd-client --test taskctl)" >&2
  exit 2
fi
# Comma-separated cargo features for clippy and the tests (extend, e.g. with taskd/chaos-break).
export TASKD_TEST_FEATURES=${TASKD_TEST_FEATURES:-taskd/failpoints,taskd/chaos-break}

step() { printf '\n==> %s\n' "$*"; }

trap mysql_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- steps -------------------------------------------------------------------------

step_toolchain() {
  step "toolchain: cargo, rustfmt, clippy"
  command -v cargo >/dev/null 2>&1 || { echo "ERROR: cargo not found (install Rust with rustup)" >&2; return 1; }
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 || { echo "ERROR: rustfmt/clippy missing and no rustup to add them" >&2; return 1; }
    rustup component add rustfmt clippy
  fi
  cargo --version
}

step_mysql() {
  step "mysql: a server for the MySQL-backed tests"
  mysql_ensure
  echo "TASKD_TEST_MYSQL_URL=$TASKD_TEST_MYSQL_URL"
}

step_buf() {
  step "buf lint"
  buf_ensure
  "$BUF" lint
  echo "buf lint: ok ($("$BUF" --version))"
  # taskd.v1 is a published contract: no breaking change against the previous commit,
  # nor against the first commit that published it.
  local proto=proto/taskd/v1/taskd.proto ref
  for ref in HEAD~1 "$(git log --diff-filter=A --format=%H -- "$proto" 2>/dev/null | tail -n 1)"; do
    if [ -n "$ref" ] && git cat-file -e "$ref:$proto" 2>/dev/null; then
      "$BUF" breaking --against ".git#ref=$ref,subdir=proto"
      echo "buf breaking against $ref: ok"
    fi
  done
}

step_fmt() {
  step "cargo fmt --all -- --check"
  cargo fmt --all -- --check
}

step_clippy() {
  step "cargo clippy --workspace --all-targets --features $TASKD_TEST_FEATURES -- -D warnings"
  cargo clippy --workspace --all-targets --features "$TASKD_TEST_FEATURES" -- -D warnings
}

step_test() {
  local runner=${TASKD_TEST_RUNNER:-}
  # tests/it/deploy.rs runs deploy/gen-secrets.sh, which needs the openssl CLI.
  _need_tool openssl openssl
  if [ -z "$runner" ]; then
    if cargo nextest --version >/dev/null 2>&1; then runner=nextest; else runner=cargo; fi
  fi
  case "$runner" in
    nextest)
      step "cargo nextest run --workspace --all-targets --features $TASKD_TEST_FEATURES $*"
      cargo nextest run --workspace --all-targets --features "$TASKD_TEST_FEATURES" --no-tests=fail "$@"
      ;;
    cargo)
      step "cargo test --workspace --all-targets --features $TASKD_TEST_FEATURES $*"
      cargo test --workspace --all-targets --features "$TASKD_TEST_FEATURES" "$@"
      ;;
    *) echo "ERROR: TASKD_TEST_RUNNER must be cargo or nextest, not '$runner'" >&2; return 1 ;;
  esac
}

step_codegen() {
  step "codegen: the Python client's checked-in stubs match scripts/gen_python.sh"
  local generated=clients/python/src/taskd_client/_proto
  scripts/gen_python.sh
  if ! git diff --exit-code --stat -- "$generated" || [ -n "$(git status --porcelain -- "$generated")" ]; then
    git status --short -- "$generated" >&2
    echo "ERROR: the generated Python stubs under $generated differ from the committed ones;" \
      "run scripts/gen_python.sh and commit the result" >&2
    return 1
  fi
  echo "codegen: up to date"
}

step_python() {
  step "python client: pytest against a 3-node taskd cluster"
  cargo build --quiet --bin taskd --features "$TASKD_TEST_FEATURES"
  local venv=target/tools/venv-py target=${CARGO_TARGET_DIR:-target} rc=0
  case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input "./clients/python[test]"
  TASKD_BIN="$target/debug/taskd" \
    "$venv/bin/python" -m pytest clients/python/tests -q -p no:cacheprovider || rc=$?
  # pytest exits 5 when it collected no tests: a suite that vanished is a failure.
  if [ "$rc" -eq 5 ]; then echo "ERROR: pytest found no tests in clients/python/tests" >&2; return 1; fi
  return "$rc"
}

# Installs a Debian package as root when `command` is missing.
_need_tool() {
  local tool=$1 package=$2
  command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin"
  command -v "$tool" >/dev/null 2>&1 && return 0
  _mysql_apt_install "$package" || { echo "ERROR: $tool missing and apt-get install $package failed" >&2; return 1; }
  command -v "$tool" >/dev/null 2>&1 || { echo "ERROR: $package installed but no $tool" >&2; return 1; }
}

step_chaos() {
  step "chaos: taskd-chaos on MySQL (must pass), and --break stale-reads (must be caught)"
  _need_tool ip iproute2
  _need_tool nft nftables
  _need_tool mariadbd mariadb-server
  _need_tool mariadb mariadb-client
  cargo build --quiet -p taskd -p taskd-chaos --bin taskd --bin taskd-chaos --features "$TASKD_TEST_FEATURES"
  local target=${CARGO_TARGET_DIR:-target} seed=${TASKD_CHAOS_SEED:-1} rc=0
  local chaos="$target/debug/taskd-chaos"
  local nemesis=${TASKD_CHAOS_NEMESIS:-kill,pause,partition,mysql-kill,membership}
  rm -rf "$target/chaos"
  _mysql_as_root "$chaos" --seed "$seed" --duration "${TASKD_CHAOS_DURATION:-120s}" --backend mysql \
    --nemesis "$nemesis" --out "$target/chaos/pass" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "ERROR: taskd-chaos found a violation or could not run (exit $rc); see $target/chaos/pass/report.md." \
      "Replay: $chaos --seed $seed --duration ${TASKD_CHAOS_DURATION:-120s} --backend mysql --nemesis $nemesis" >&2
    return 1
  fi
  # A checker that has never failed proves nothing: a taskd that serves reads without
  # read-index must be reported (exit 1 = violations; 2 would be a harness failure).
  rc=0
  _mysql_as_root "$chaos" --seed "$seed" --duration 30s --backend mysql --nemesis partition \
    --break stale-reads --out "$target/chaos/break-stale-reads" || rc=$?
  if [ "$rc" -ne 1 ]; then
    echo "ERROR: taskd-chaos --break stale-reads exited $rc, not 1 (violations found);" \
      "see $target/chaos/break-stale-reads/report.md" >&2
    return 1
  fi
  echo "chaos: the fault schedule passed and the broken taskd was caught"
}

# The previous release builds (minutes of CPU) while the next steps mostly wait on
# processes; step_prev_release then waits for it. It needs the dependencies that the
# README step compiled, so it starts after that step.
prev_release_pid=
step_prev_release_start() {
  step "prev-release: building the previous release's taskd in the background"
  mkdir -p "${CARGO_TARGET_DIR:-target}"
  scripts/prev_release.sh >"${CARGO_TARGET_DIR:-target}/prev-release.log" 2>&1 &
  prev_release_pid=$!
}

step_prev_release() {
  step "prev-release: the previous release's taskd for tests/it/upgrade.rs (scripts/prev_release.sh)"
  if [ -n "$prev_release_pid" ]; then
    if ! wait "$prev_release_pid"; then
      cat "${CARGO_TARGET_DIR:-target}/prev-release.log" >&2
      echo "ERROR: building the previous release failed (above)" >&2
      return 1
    fi
    tail -n 1 "${CARGO_TARGET_DIR:-target}/prev-release.log"
  else
    scripts/prev_release.sh
  fi
}

step_fuzz() {
  step "fuzz: each cargo-fuzz target for ${TASKD_FUZZ_SECONDS:-30}s (scripts/fuzz.sh)"
  scripts/fuzz.sh
}

step_readme() {
  step "README grpcurl examples, verbatim, against taskd dev"
  scripts/readme_examples.sh
}

step_runbooks() {
  step "README runbooks (Operating a cluster), verbatim, on taskd serve processes"
  scripts/runbooks.sh
}

# A later step (e.g. the Python client's tests) is one more function above plus one
# more name in CHECK_STEPS below.
SETUP_STEPS=(toolchain mysql buf)
CHECK_STEPS=(fmt clippy codegen readme prev_release_start runbooks python prev_release test chaos fuzz)

# ---- main --------------------------------------------------------------------------

setup_only=0
runner_args=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --setup-only) setup_only=1 ;;
    --) shift; runner_args=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# Wall time per step, printed at the end (where the test command's time goes).
timings=()
timed() {
  local started=$SECONDS
  "$@"
  timings+=("$(printf '%-10s %4ds' "${1#step_}" $((SECONDS - started)))")
}

for s in "${SETUP_STEPS[@]}"; do timed "step_$s"; done
if [ "$setup_only" -eq 1 ]; then
  step "set-up done (--setup-only)"
  exit 0
fi
for s in "${CHECK_STEPS[@]}"; do
  if [ "$s" = test ]; then timed "step_$s" "${runner_args[@]}"; else timed "step_$s"; fi
done
step "wall time by step"
printf '  %s\n' "${timings[@]}"
echo "  total      ${SECONDS}s"
