#!/usr/bin/env bash
# Runs taskd's cargo-fuzz targets (fuzz/), each for a while, from the repo root:
#   scripts/fuzz.sh                      every target, TASKD_FUZZ_SECONDS (30) each
#   TASKD_FUZZ_SECONDS=3600 scripts/fuzz.sh raft_entry    one target, an hour
#
# Installs the pinned cargo-fuzz into target/tools if missing. libFuzzer builds need
# nightly compiler flags: on a stable toolchain RUSTC_BOOTSTRAP=1 allows them (the
# fuzz crate is its own workspace, built into target/fuzz, so the rest is untouched).
# No sanitizer: taskd and its decoders are safe Rust, and a panic, an abort, an
# out-of-memory or a timeout is what a target can find; debug assertions stay on.
# Each run starts from the committed seeds (fuzz/corpus/<target>, read only) plus
# what earlier runs found (target/fuzz-corpus/<target>). A crash fails the run; its
# input is saved under fuzz/artifacts/<target>/ and the command to replay it printed.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=${CARGO_FUZZ_VERSION:-0.13.2}
SECONDS_EACH=${TASKD_FUZZ_SECONDS:-30}
TOOLS=$PWD/target/tools
CARGO_FUZZ=$TOOLS/bin/cargo-fuzz
export RUSTC_BOOTSTRAP=1
# The options every build and run shares (a change rebuilds everything).
# The test command's smoke run builds unoptimized (--dev: a few minutes instead of a
# quarter hour on 2 cores, with debug assertions); TASKD_FUZZ_PROFILE=--release for
# long runs, which then execute many times more inputs per second.
FUZZ_OPTS=("${TASKD_FUZZ_PROFILE:---dev}" --debug-assertions --sanitizer none --target-dir target/fuzz)

if ! [ -x "$CARGO_FUZZ" ] || [ "$("$CARGO_FUZZ" --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "[fuzz] installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS"
  cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$TOOLS"
fi

cargo fmt --manifest-path fuzz/Cargo.toml -- --check

if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <("$CARGO_FUZZ" list); fi
if [ "${#targets[@]}" -eq 0 ]; then echo "[fuzz] ERROR: no fuzz targets found" >&2; exit 1; fi

"$CARGO_FUZZ" build "${FUZZ_OPTS[@]}"
for target in "${targets[@]}"; do
  found=target/fuzz-corpus/$target
  mkdir -p "$found" "fuzz/corpus/$target"
  echo "[fuzz] $target: ${SECONDS_EACH}s"
  # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: an input that
  # makes a decoder allocate gigabytes is a bug (issue 7.8), not a slow machine.
  if ! "$CARGO_FUZZ" run "${FUZZ_OPTS[@]}" "$target" "$found" "fuzz/corpus/$target" -- \
      -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"target/fuzz-$target.log" 2>&1; then
    tail -n 60 "target/fuzz-$target.log" >&2
    echo "[fuzz] ERROR: $target crashed; replay the input above with" \
      "RUSTC_BOOTSTRAP=1 $CARGO_FUZZ run ${FUZZ_OPTS[*]} $target fuzz/artifacts/$target/<file>" >&2
    exit 1
  fi
  grep -E '^Done [0-9]+ runs' "target/fuzz-$target.log" || true
done
# The plain closing line a CI log reader counts.
echo "fuzz: ${#targets[@]} passed, 0 failed"
