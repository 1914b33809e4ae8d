#!/usr/bin/env bash
# Runs every test: unit, component and end to end (real docker-registry and skopeo on loopback).
# Installs the system packages the end-to-end tests need first.
#
# --all also builds the Go test peers of the client and registry tiers (e2e_clients.rs, e2e_registries.rs;
# testground/<peer>/build.sh, cached by version outside the clone) and the node tier's binaries and images
# (k8s_node.rs: kubelet, kube-scheduler, kube-proxy, containerd's shim, CoreDNS, the pause/tools/BuildKit/CoreDNS
# images), so that those tests run instead of printing that they were skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
client_peers="crane oras regclient helm ko buildkit containerd distribution"
# The node tier's peers (scripts/cluster.sh up --node builds whatever is missing).
node_peers() {
    testground/k8s/build.sh --node >/dev/null &&
    testground/containerd/build.sh --shim >/dev/null &&
    testground/coredns/build.sh >/dev/null &&
    testground/images/build.sh all >/dev/null
}
if [ "${1:-}" = "--all" ]; then
    shift
    for peer in $client_peers; do
        testground/$peer/build.sh >/dev/null
    done
    node_peers
else
    # Their tests pass without running when a peer is missing (libtest hides what they print): say it here.
    missing=""
    for peer in $client_peers; do
        TG_CHECK_ONLY=1 testground/$peer/build.sh >/dev/null 2>&1 || missing="$missing $peer"
    done
    if [ -n "$missing" ]; then
        echo "test.sh: client and registry tiers (e2e_clients.rs, e2e_registries.rs): skipping the tests of peers not built on this machine:$missing; \`scripts/test.sh --all\` builds and runs them (about 20 minutes cold)"
    fi
fi
# The node tier (k8s_node.rs) runs when its peers are built on this machine; otherwise it says so and is skipped.
if ! TG_CHECK_ONLY=1 node_peers 2>/dev/null; then
    echo "test.sh: node tier (crates/connectors/tests/k8s_node.rs): skipped, its binaries and images are not built on this machine; \`scripts/test.sh --all\` builds and runs it (about 20 minutes cold), or \`cargo test -p connectors --test k8s_node\` (builds what is missing)"
    export CONNECTORS_SKIP_NODE_TIER=1
fi
# The control-plane tier (crates/connectors/tests/k8s_control_plane.rs) runs on etcd, kube-apiserver,
# kube-controller-manager and kubectl built from their Go modules (testground/k8s/), cached outside the clone;
# built here first so that the build shows as its own step (about 10 minutes on a fresh 2-core machine).
testground/k8s/build.sh >/dev/null
cargo test --workspace --locked "$@"
