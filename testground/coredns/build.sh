#!/usr/bin/env bash
# Builds CoreDNS v1.15.0 (test peer only: the node tier's cluster DNS) from the pinned wrapper module beside this
# script; prints the cache folder. Keep VERSION in step with go.mod.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib.sh"
VERSION=v1.15.0
build() {
    (cd "$HERE" && GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -ldflags="-s -w" -o "$OUT/coredns" github.com/coredns/coredns)
    "$OUT/coredns" -version
}
tg_cached_or_build coredns-$VERSION build
