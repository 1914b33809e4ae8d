#!/usr/bin/env bash
# Builds the template judge (Go's text/template + sprig v3, see main.go) and prints the folder holding
# `gotemplate`. Cached in $TESTGROUND_CACHE/gotemplate-<version>/: instant when cached, seconds when not.
# The version names sprig's and Go's and a digest of this module's sources, so any edit rebuilds.
# Called by crates/render/tests/template_judge.rs (plain `cargo test` and `.ci/run`).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
source "$here/../lib.sh"

command -v go >/dev/null || { tg_log "go is not installed: the template judge is built from Go (1.26.8) sources"; exit 1; }
sprig="$(awk '$1 == "require" && $2 == "github.com/Masterminds/sprig/v3" { print $3 }' "$here/go.mod")"
gover="$(go env GOVERSION)"
digest="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-12)"

build() {
    (cd "$here" && go build -trimpath -o "$OUT/gotemplate" .)
}

tg_cached_or_build "gotemplate-sprig${sprig}-${gover}-${digest}" build
