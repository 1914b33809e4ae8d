#!/usr/bin/env bash
# Builds buildctl buildkitd v0.35.1 (test peer only) from the pinned wrapper module beside this script; prints the cache folder.
# The version is pinned in go.mod/go.sum here; keep VERSION in step with it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib.sh"
VERSION=v0.35.1
build() {
    (cd "$HERE" && GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -o "$OUT/buildctl" github.com/moby/buildkit/cmd/buildctl)
    (cd "$HERE" && GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -o "$OUT/buildkitd" github.com/moby/buildkit/cmd/buildkitd)
}
tg_cached_or_build buildkit-$VERSION build
