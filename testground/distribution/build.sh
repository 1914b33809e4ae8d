#!/usr/bin/env bash
# Builds registry (distribution) v3.1.2 (test peer only) from the pinned wrapper module beside this script; prints the cache folder.
# The version is pinned in go.mod/go.sum here; keep VERSION in step with it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib.sh"
VERSION=v3.1.2
build() { (cd "$HERE" && GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -o "$OUT/registry" github.com/distribution/distribution/v3/cmd/registry); }
tg_cached_or_build distribution-$VERSION build
