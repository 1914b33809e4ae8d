#!/usr/bin/env bash
# Builds helm v4.3.2 (test peer only) from the pinned wrapper module beside this script; prints the cache folder.
# The version is pinned in go.mod/go.sum here; keep VERSION in step with it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib.sh"
VERSION=v4.3.2
build() {
    (cd "$HERE" && GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -o "$OUT/helm" helm.sh/helm/v4/cmd/helm)
}
tg_cached_or_build helm-$VERSION build
