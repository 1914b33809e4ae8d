#!/usr/bin/env bash
# Short, bounded fuzz run for CI (issue 7): every target for FUZZ_SECONDS (default 15) from the
# committed seeds; fails on the first crash, panic, leak or timeout. See fuzz/README.md.
#
# Stable Rust is enough: cargo-fuzz with `--sanitizer none` (the code under test forbids `unsafe`,
# so a sanitizer would find nothing a panic does not already show).
set -euo pipefail
cd "$(dirname "$0")"
FUZZ_SECONDS="${FUZZ_SECONDS:-15}"
# Build next to the main build but in its own folder: other RUSTFLAGS, other lock file.
TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/connectors-ci-target}/fuzz"
# Inputs the run discovers go here, never into the committed seed folders.
WORK="${FUZZ_WORK:-$(mktemp -d /var/tmp/connectors-fuzz.XXXXXX)}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi
echo "fuzz: $(cargo fuzz --version)"

targets=$(cargo fuzz list)
cargo fuzz build --sanitizer none --target-dir "$TARGET_DIR"
for t in $targets; do
    mkdir -p "$WORK/$t"
    echo "fuzz: $t for ${FUZZ_SECONDS}s"
    # -timeout: one input taking over 10 s is a finding (a hang), as is a leak or a panic.
    if ! cargo fuzz run --sanitizer none --target-dir "$TARGET_DIR" "$t" \
        "$WORK/$t" "corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$WORK/$t.log" 2>&1; then
        tail -n 60 "$WORK/$t.log" >&2
        echo "fuzz: $t FAILED; the failing input is in fuzz/artifacts/$t/ (log: $WORK/$t.log)" >&2
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|new_units_added)|^#[0-9]+ +DONE' "$WORK/$t.log" || true
done
[ -n "${FUZZ_WORK:-}" ] || rm -rf "$WORK"
echo "fuzz: all targets passed"
