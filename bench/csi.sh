#!/usr/bin/env bash
# CSI NodePublishVolume / NodeUnpublishVolume latency, over the driver's unix socket.
#
#   bench/csi.sh [publish_bench options…]     e.g. bench/csi.sh --calls 2000 --tmpfs-calls 0
#
# Builds and runs crates/csi/examples/publish_bench.rs in release: the real driver (connectors_csi::serve)
# on a unix socket in a temporary folder, a tonic client over that socket, one call at a time. Progress
# goes to stderr; a Markdown report (machine, load, commit, the table) goes to stdout. See bench/README.md.
#
# Environment:
#   CALLS=1000           publish+unpublish pairs with tmpfs mounting off (--calls)
#   TMPFS_CALLS=200      pairs with tmpfs mounting on (--tmpfs-calls; root only, skipped otherwise; 0 = skip)
#   WARMUP=20            untimed pairs before each series (--warmup)
#   BENCH_TMPDIR=DIR     where the driver's temporary folder (socket, targets) goes (default $TMPDIR or /tmp)
#   NO_BUILD=1           do not run cargo; use $CARGO_TARGET_DIR/release/examples/publish_bench (or target/…)
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
case "${1:-}" in -h|--help) usage; exit 0 ;; esac

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[csi.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

target_dir=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
case "$target_dir" in /*) ;; *) target_dir=$REPO_ROOT/$target_dir ;; esac
BIN=$target_dir/release/examples/publish_bench

if [ "${NO_BUILD:-}" != 1 ]; then
  log "cargo build --release -p connectors-csi --example publish_bench (a no-op when up to date)"
  (cd "$REPO_ROOT" && cargo build --release -p connectors-csi --example publish_bench >&2) \
    || die "release build failed (NO_BUILD=1 runs an existing binary)"
fi
[ -x "$BIN" ] || die "no benchmark binary at $BIN"

tmp_base=${BENCH_TMPDIR:-${TMPDIR:-/tmp}}
[ -d "$tmp_base" ] || die "BENCH_TMPDIR $tmp_base is not a folder"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
log "running $BIN (load average $load_before)"
table=$(TMPDIR=$tmp_base "$BIN" --calls "${CALLS:-1000}" --tmpfs-calls "${TMPFS_CALLS:-200}" \
  --warmup "${WARMUP:-20}" "$@")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
dirty=""
git -C "$REPO_ROOT" diff --quiet HEAD 2>/dev/null || dirty=" (working tree has uncommitted changes)"
cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)

cat <<EOF
### Report: CSI NodePublishVolume ($started)

$table

Machine: $(nproc) CPUs ($cpu_model), kernel $(uname -r), running as $( [ "$(id -u)" = 0 ] && echo root || echo "uid $(id -u)" ), nice $(nice).
Load average (1/5/15 min): $load_before before, $load_after after. Commit: \`$rev\`$dirty.
Temporary folder under \`$tmp_base\`. Binary: \`$BIN\`.
EOF
