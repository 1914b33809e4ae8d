# Shared by the testground build scripts (sourced, not run). Go builds test peers only; nothing built here
# ships in the product.
#
#   TESTGROUND_CACHE   where built binaries live, one folder per peer and version
#                      (default /var/cache/connectors-testground; outside the clone so CI runs reuse them)
#
# A build script calls `tg_cached_or_build NAME-VERSION build_fn`: when NAME-VERSION/.complete exists the
# folder is printed at once; otherwise build_fn runs with $OUT set to a fresh staging folder, which is moved into
# place only when it succeeds (an interrupted build never leaves a half-filled cache entry). With TG_CHECK_ONLY=1
# it only tells (exit 3 when the peer is not built).
set -euo pipefail

TESTGROUND_CACHE="${TESTGROUND_CACHE:-/var/cache/connectors-testground}"
# The machine's Go (1.26.8) builds every peer pinned so far. A peer whose module needs a newer Go sets
# `export GOTOOLCHAIN=go1.27.3` in its own build script: the one approved way (the go command then fetches that
# toolchain from the Go module proxy, ~76 MB once per machine).
# Static binaries: no libc version coupling between the build and the machine that runs them.
export CGO_ENABLED="${CGO_ENABLED:-0}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

tg_log() { echo "testground: $*" >&2; }

tg_cached_or_build() {
    local key="$1" fn="$2"
    local dir="$TESTGROUND_CACHE/$key"
    if [ -f "$dir/.complete" ]; then
        echo "$dir"
        return 0
    fi
    # TG_CHECK_ONLY=1: say whether it is built (exit 3 when not), never build.
    if [ "${TG_CHECK_ONLY:-}" = 1 ]; then
        return 3
    fi
    command -v go >/dev/null || { tg_log "go is not installed; the $key peers are built from Go modules"; return 1; }
    mkdir -p "$TESTGROUND_CACHE"
    # One builder per key at a time (parallel test binaries may all ask for the same peer).
    exec 9>"$TESTGROUND_CACHE/.$key.lock"
    flock 9
    if [ -f "$dir/.complete" ]; then
        exec 9>&-
        echo "$dir"
        return 0
    fi
    local stage="$dir.partial.$$"
    rm -rf "$stage"
    mkdir -p "$stage"
    local start=$SECONDS
    tg_log "building $key (cached in $dir; first build takes minutes)"
    if ! OUT="$stage" "$fn" >&2; then
        rm -rf "$stage"
        exec 9>&-
        tg_log "building $key FAILED"
        return 1
    fi
    echo "$((SECONDS - start))" > "$stage/.build-seconds"
    rm -rf "$dir"
    mv "$stage" "$dir"
    touch "$dir/.complete"
    exec 9>&-
    tg_log "built $key in $((SECONDS - start)) s"
    echo "$dir"
}
