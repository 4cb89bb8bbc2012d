#!/usr/bin/env bash
# Builds the previous release's `taskd` once and prints the binary's path:
#   scripts/prev_release.sh          build if missing, then print the path
#
# "The previous release" is PREV_RELEASE below: the commit before the newest change
# of a format that nodes write or send (src/raft/codec.rs). The upgrade tests
# (tests/it/upgrade.rs) start a cluster of it and upgrade it node by node to the
# current build. Bump PREV_RELEASE in the commit after one that changes a format.
#
# Cached under $TARGET/prev-release/<commit>/ (TARGET = $CARGO_TARGET_DIR or target/):
#   src/     the commit's tree (git archive; needs the commit, i.e. not a shallow clone)
#   target/  its cargo target dir, seeded on first use with a copy of the current
#            build's compiled dependencies ($TARGET/debug/{deps,build,.fingerprint}):
#            Cargo.lock, features and profile are the same, so cargo reuses every
#            registry crate and compiles only the workspace's own crates
#   taskd    the binary; when it exists nothing is built (the commit never changes),
#            and the target dir is deleted once it is built (gigabytes, never needed again)
# Under a lock (flock), so parallel tests and the test command's step build it once.
# Built with $TASKD_TEST_FEATURES (the test command's), which keeps the seeded
# dependencies fresh; the old release's failpoints stay off (no FAILPOINTS set).
set -euo pipefail
cd "$(dirname "$0")/.."

PREV_RELEASE=b0e3938361c14c8aa598bed9e9ac2ada0513ae9e
FEATURES=${TASKD_TEST_FEATURES:-taskd/failpoints,taskd/chaos-break}
TARGET=${CARGO_TARGET_DIR:-target}
case "$TARGET" in /*) ;; *) TARGET="$PWD/$TARGET" ;; esac
CACHE=$TARGET/prev-release/$PREV_RELEASE
BIN=$CACHE/taskd

mkdir -p "$CACHE"
exec 9>"$CACHE.lock"
flock 9
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi

log() { echo "[prev-release] $*" >&2; }
if ! git cat-file -e "$PREV_RELEASE^{commit}" 2>/dev/null; then
  log "ERROR: commit $PREV_RELEASE is not in this clone (a shallow clone?); fetch it:" \
    "git fetch --unshallow, or git fetch origin $PREV_RELEASE"
  exit 1
fi
started=$(date +%s)
rm -rf "$CACHE/src"
mkdir -p "$CACHE/src"
git archive "$PREV_RELEASE" | tar -x -C "$CACHE/src"
if [ ! -d "$CACHE/target/debug" ] && [ -d "$TARGET/debug/deps" ]; then
  log "seeding $CACHE/target with the current build's dependencies"
  mkdir -p "$CACHE/target/debug"
  for d in deps build .fingerprint; do
    [ -d "$TARGET/debug/$d" ] && cp -r "$TARGET/debug/$d" "$CACHE/target/debug/"
  done
fi
log "building taskd at $PREV_RELEASE (features $FEATURES)"
offline=()
cargo build --help 2>/dev/null | grep -q -- --offline && cargo fetch --offline \
  --manifest-path "$CACHE/src/Cargo.toml" >/dev/null 2>&1 && offline=(--offline)
CARGO_TARGET_DIR=$CACHE/target cargo build "${offline[@]}" --quiet \
  --manifest-path "$CACHE/src/Cargo.toml" --bin taskd --features "$FEATURES" >&2
cp "$CACHE/target/debug/taskd" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
# Only the binary is kept: the target dir is gigabytes, and the commit never changes.
rm -rf "$CACHE/target"
log "built in $(($(date +%s) - started)) s: $BIN"
echo "$BIN"
