#!/usr/bin/env bash
# Builds ctr containerd v2.4.2 (test peer only) from the pinned wrapper module beside this script; prints the cache folder.
# The version is pinned in go.mod/go.sum here; keep VERSION in step with it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib.sh"
VERSION=v2.4.2
build() {
    (cd "$HERE" && GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -o "$OUT/ctr" github.com/containerd/containerd/v2/cmd/ctr)
    (cd "$HERE" && GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -o "$OUT/containerd" github.com/containerd/containerd/v2/cmd/containerd)
}
tg_cached_or_build containerd-$VERSION build
