#!/usr/bin/env bash
# Builds ctr containerd v2.4.2 (test peer only) from the pinned wrapper module beside this script; prints the cache folder.
# With --shim it builds containerd-shim-runc-v2 too (the node tier's runtime shim), cached apart so the client
# tier's cache entry stays valid.
# The version is pinned in go.mod/go.sum here; keep VERSION in step with it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib.sh"
VERSION=v2.4.2
build() {
    (cd "$HERE" && GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -o "$OUT/ctr" github.com/containerd/containerd/v2/cmd/ctr)
    (cd "$HERE" && GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -o "$OUT/containerd" github.com/containerd/containerd/v2/cmd/containerd)
}
build_shim() {
    (cd "$HERE" && GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -o "$OUT/containerd-shim-runc-v2" github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2)
}
case "${1:-}" in
    "") tg_cached_or_build containerd-$VERSION build ;;
    --shim) tg_cached_or_build containerd-$VERSION build >/dev/null
            tg_cached_or_build containerd-shim-$VERSION build_shim ;;
    *) echo "usage: $0 [--shim]" >&2; exit 2 ;;
esac
