#!/usr/bin/env bash
# Builds crane v0.22.1 (test peer only) from the pinned wrapper module beside this script; prints the cache folder.
# The version is pinned in go.mod/go.sum here; keep VERSION in step with it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib.sh"
VERSION=v0.22.1
build() { (cd "$HERE" && GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -o "$OUT/crane" github.com/google/go-containerregistry/cmd/crane); }
tg_cached_or_build crane-$VERSION build
