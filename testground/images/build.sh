#!/usr/bin/env bash
# Builds the container images the node tier runs, here, from sources on this machine (no image is pulled from
# outside): each one a docker-archive tar that `ctr -n k8s.io images import` loads into the node's containerd.
#
#   testground/images/build.sh pause|tools|buildkit|coredns    prints the path of the image's tar (cached)
#   testground/images/build.sh all                             all four
#
#   pause     registry.k8s.io/pause:3.10.2 — the pod sandbox; pause.c from the k8s.io/kubernetes module
#             (testground/k8s's pinned version), built with `gcc -static`
#   tools     connectors-playground/tools:latest — bash, curl, skopeo, buildah, runc, ca-certificates from
#             Debian bookworm (mmdebstrap from deb.debian.org; the packages are the only download)
#   buildkit  connectors-playground/buildkit:v0.35.1 — tools plus buildkitd, buildctl and
#             buildctl-daemonless.sh from the BuildKit module (testground/buildkit)
#   coredns   connectors-playground/coredns:v1.15.0 — the CoreDNS binary alone (testground/coredns)
#
# Cached in $TESTGROUND_CACHE/image-<name>-<version>/ like the Go peers. Images are assembled with buildah in a
# private storage folder (vfs), so the machine's own container storage is not touched.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib.sh"

PAUSE_TAG=3.10.2
TOOLS_PACKAGES="bash,ca-certificates,curl,skopeo,buildah,runc,iproute2,procps"
# The key changes with the package list and the storage.conf the image carries.
TOOLS_KEY="bookworm-$(cat <(echo "$TOOLS_PACKAGES") "$HERE/storage.conf" | sha256sum | cut -c1-8)"

# buildah with a private, throw-away storage under $OUT.
bah() { buildah --root "$OUT/.storage" --runroot "$OUT/.run" --storage-driver vfs "$@"; }
# finish NAME — commit the working container $c as NAME into $OUT/image.tar, then drop the storage.
finish() {
    bah commit -q "$c" "$1" >/dev/null
    bah push -q "$1" "docker-archive:$OUT/image.tar:$1"
    echo "$1" > "$OUT/name"
    bah rm -a >/dev/null
    bah rmi -a -f >/dev/null 2>&1 || true
    rm -rf "$OUT/.storage" "$OUT/.run"
}

build_pause() {
    local k8s src
    k8s="$(cd "$HERE/../k8s" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)"
    src="$k8s/build/pause/linux/pause.c"
    [ -f "$src" ] || { tg_log "no $src (run testground/k8s/build.sh first)"; return 1; }
    gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_TAG-connectors" -o "$OUT/pause" "$src"
    c=$(bah from scratch)
    bah copy "$c" "$OUT/pause" /pause
    bah config --entrypoint '["/pause"]' --user 65535:65535 "$c"
    finish "registry.k8s.io/pause:$PAUSE_TAG"
    rm -f "$OUT/pause"
}

tools_rootfs() {
    mmdebstrap --quiet --variant=essential --include="$TOOLS_PACKAGES" \
        --dpkgopt='path-exclude=/usr/share/{doc,man,locale,info}/*' \
        bookworm "$1" http://deb.debian.org/debian
}

build_tools() {
    tools_rootfs "$OUT/rootfs.tar"
    c=$(bah from scratch)
    bah add "$c" "$OUT/rootfs.tar" /
    # buildah inside a pod: no overlay-on-overlay, no user namespaces, no cgroups of its own.
    bah copy "$c" "$HERE/storage.conf" /etc/containers/storage.conf
    bah config --env BUILDAH_ISOLATION=chroot --cmd '["bash"]' "$c"
    finish connectors-playground/tools:latest
    rm -f "$OUT/rootfs.tar"
}

build_buildkit() {
    local bk bkmod tools
    bk="$("$HERE/../buildkit/build.sh")"
    bkmod="$(cd "$HERE/../buildkit" && go list -m -f '{{.Dir}}' github.com/moby/buildkit)"
    tools="$(tg_cached_or_build "image-tools-$TOOLS_KEY" build_tools)"
    bah pull -q "docker-archive:$tools/image.tar" >/dev/null
    c=$(bah from connectors-playground/tools:latest)
    bah copy --chmod 0755 "$c" "$bk/buildkitd" "$bk/buildctl" "$bkmod/examples/buildctl-daemonless/buildctl-daemonless.sh" /usr/local/bin/
    bah config --entrypoint '["buildkitd"]' "$c"
    finish connectors-playground/buildkit:v0.35.1
}

build_coredns() {
    local bin
    bin="$("$HERE/../coredns/build.sh")"
    c=$(bah from scratch)
    bah copy "$c" "$bin/coredns" /coredns
    bah config --entrypoint '["/coredns"]' --user 65532:65532 "$c"
    finish connectors-playground/coredns:v1.15.0
}

one() {
    local dir
    case "$1" in
        pause) dir="$(tg_cached_or_build "image-pause-$PAUSE_TAG" build_pause)" ;;
        tools) dir="$(tg_cached_or_build "image-tools-$TOOLS_KEY" build_tools)" ;;
        buildkit) dir="$(tg_cached_or_build "image-buildkit-v0.35.1-$TOOLS_KEY" build_buildkit)" ;;
        coredns) dir="$(tg_cached_or_build image-coredns-v1.15.0 build_coredns)" ;;
        *) echo "usage: $0 pause|tools|buildkit|coredns|all" >&2; exit 2 ;;
    esac
    echo "$dir/image.tar"
}

case "${1:-}" in
    all) for i in pause tools buildkit coredns; do one "$i"; done ;;
    -h|--help|"") sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ] ;;
    *) one "$1" ;;
esac
