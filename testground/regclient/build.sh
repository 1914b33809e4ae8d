#!/usr/bin/env bash
# Builds regctl v0.11.7 (test peer only) from the pinned wrapper module beside this script; prints the cache folder.
# The version is pinned in go.mod/go.sum here; keep VERSION in step with it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib.sh"
VERSION=v0.11.7
build() { (cd "$HERE" && GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -o "$OUT/regctl" github.com/regclient/regclient/cmd/regctl); }
tg_cached_or_build regclient-$VERSION build
