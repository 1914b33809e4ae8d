#!/usr/bin/env bash
# Builds the Kubernetes control plane for the tests from Go modules pinned in go.mod beside this script:
# etcd, kube-apiserver, kube-controller-manager and kubectl (static, CGO_ENABLED=0). With --node also
# kube-scheduler, kubelet and kube-proxy (the node tier).
#
#   testground/k8s/build.sh [--node]      prints the folder holding the binaries (built once, then cached)
#
# Cached in $TESTGROUND_CACHE/k8s-<version>/ (default /var/cache/connectors-testground). `go install
# pkg@version` cannot build these (k8s.io/kubernetes and etcd's go.mod files carry replace directives); this
# wrapper module requires them and replaces every k8s.io staging module by its published version instead.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../lib.sh"

K8S_VERSION=v1.36.3   # keep in step with go.mod (require + replace lines)
ETCD_VERSION=v3.6.8   # the etcd k8s.io/kubernetes $K8S_VERSION itself requires

ldflags() {
    local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
    local v=k8s.io/component-base/version
    echo "-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
         "-X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
}

build_control_plane() {
    cd "$here"
    go build -trimpath -ldflags="$(ldflags)" -o "$OUT/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kubectl
    go build -trimpath -ldflags="-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3
    "$OUT/kube-apiserver" --version
    # (not `| head -1`: etcd would die of SIGPIPE and, with pipefail, fail the build)
    local etcd_version
    etcd_version="$("$OUT/etcd" --version)"
    echo "${etcd_version%%$'\n'*}"
}

build_node() {
    cd "$here"
    go build -trimpath -ldflags="$(ldflags)" -o "$OUT/" \
        k8s.io/kubernetes/cmd/kube-scheduler \
        k8s.io/kubernetes/cmd/kubelet \
        k8s.io/kubernetes/cmd/kube-proxy
}

case "${1:-}" in
    "") tg_cached_or_build "k8s-$K8S_VERSION" build_control_plane ;;
    --node) tg_cached_or_build "k8s-$K8S_VERSION" build_control_plane >/dev/null
            tg_cached_or_build "k8s-node-$K8S_VERSION" build_node ;;
    --version) echo "$K8S_VERSION etcd $ETCD_VERSION" ;;
    *) echo "usage: $0 [--node|--version]" >&2; exit 2 ;;
esac
