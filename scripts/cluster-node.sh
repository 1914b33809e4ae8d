# The node of `scripts/cluster.sh up --node` (sourced by cluster.sh, not run): kube-scheduler, containerd with
# runc, CNI (Debian's containernetworking-plugins), a kubelet, kube-proxy and CoreDNS, with images built here.
#
# Addresses (all inside this machine; see docs/kubernetes.md, "A playground node"):
#   NODE_IP      10.250.0.1/32 on the loopback link (this kernel has no dummy links): the node's InternalIP, the kubelet, NodePorts, the
#                API server's forward for pods, and the "host address for pods" where tests run registries
#   POD_CIDR     10.244.0.0/24 on the bridge conn-br0 (gateway 10.244.0.1)
#   SERVICE_CIDR 10.96.0.0/16 (cluster.sh), DNS at 10.96.0.10
# Packets from pods never leave the machine: the FORWARD chain drops whatever would leave the bridge for another
# interface, nothing is masqueraded towards the outside, and NodePorts listen on NODE_IP only.
# The API server stays on 127.0.0.1; pods reach it through the `kubernetes` Service, whose endpoint is a socat
# forward from NODE_IP to 127.0.0.1.

NODE_NAME="${NODE_NAME:-connectors-node}"
NODE_IP="${NODE_IP:-10.250.0.1}"
POD_CIDR="${POD_CIDR:-10.244.0.0/24}"
POD_GATEWAY="${POD_CIDR%.*/*}.1"
DNS_IP="${SERVICE_CIDR%.*/*}.10"
POD_BRIDGE=conn-br0
KUBELET_ROOT=/var/lib/kubelet
CONTAINERD_STATE=/run/connectors-containerd
CONTAINERD_SOCK=$CONTAINERD_STATE/containerd.sock
# Where the kubelet reaches the proxy when it pulls images through it (if the proxy Service is made a NodePort).
PROXY_NODEPORT="${PROXY_NODEPORT:-30080}"
# Test host names pods resolve (CoreDNS `hosts`), all to the node.
NODE_HOSTS="${NODE_HOSTS:-registry.test node.registry.test}"

node_preflight() {
    [ "$(id -u)" = 0 ] || die "--node needs root (kubelet, containerd, mounts, network)"
    if [ -e "$KUBELET_ROOT" ] && [ -n "$(ls -A "$KUBELET_ROOT" 2>/dev/null)" ]; then
        die "$KUBELET_ROOT exists and is not empty: another kubelet ran here; remove it or run scripts/cluster.sh down"
    fi
    ip -o addr show dev lo | grep -q " $NODE_IP/" && die "$NODE_IP is on lo already (a node is up or was not taken down): scripts/cluster.sh down"
    for tool in runc iptables socat mmdebstrap buildah gcc; do
        command -v "$tool" >/dev/null || die "$tool is missing (.ci/run installs it: apt-get install runc iptables socat mmdebstrap buildah gcc)"
    done
    [ -x /usr/lib/cni/bridge ] || die "CNI plugins missing: apt-get install containernetworking-plugins"
    echo NODE=1 >> "$CLUSTER_DIR/cluster.env"
    [ -e /var/log/containers ] || { mkdir -p /var/log/containers; touch "$CLUSTER_DIR/.created-var-log-containers"; }
}

# The binaries and images, each built once and cached (testground/).
node_build() {
    NODE_BIN="$("$root/testground/k8s/build.sh" --node)"
    CONTAINERD_BIN="$("$root/testground/containerd/build.sh")"
    SHIM_BIN="$("$root/testground/containerd/build.sh" --shim)"
    IMAGES=""
    for i in pause coredns tools buildkit; do IMAGES="$IMAGES $("$root/testground/images/build.sh" "$i")"; done
    CONNECTORS_IMAGE_TAR=""
    if [ "${NODE_CONNECTORS:-1}" = 1 ]; then
        CONNECTORS_IMAGE_TAR="$("$root/scripts/build-image.sh" --docker-archive ${CONNECTORS_BINARY:+--binary "$CONNECTORS_BINARY"})"
        # The kubelet runs `connectors credential-provider` from the host (the binary that went into the image).
        CONNECTORS_HOST_BINARY="${CONNECTORS_BINARY:-${CARGO_TARGET_DIR:-$root/target}/release/connectors}"
    fi
}

node_pki() {
    (
        cd "$CLUSTER_DIR/pki"
        client_cert kubelet "system:node:$NODE_NAME" system:nodes
        client_cert kube-scheduler system:kube-scheduler ""
        client_cert kube-proxy system:kube-proxy ""
        client_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
        rm -f ./*.csr ./*.ext
    )
    kubeconfig "$CLUSTER_DIR/kubelet.kubeconfig" kubelet
    kubeconfig "$CLUSTER_DIR/kube-scheduler.kubeconfig" kube-scheduler
    kubeconfig "$CLUSTER_DIR/kube-proxy.kubeconfig" kube-proxy
}

node_network() {
    mount --make-rshared /
    ip addr add "$NODE_IP/32" dev lo
    sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
    # Pods may talk to each other, to Services and to the node; nothing they send is forwarded to another
    # interface, and nothing from another interface is forwarded to them.
    iptables -N CONNECTORS-NODE-FORWARD
    iptables -A CONNECTORS-NODE-FORWARD -i "$POD_BRIDGE" -o "$POD_BRIDGE" -j ACCEPT
    iptables -A CONNECTORS-NODE-FORWARD -i "$POD_BRIDGE" -j DROP
    iptables -A CONNECTORS-NODE-FORWARD -o "$POD_BRIDGE" -j DROP
    iptables -I FORWARD 1 -j CONNECTORS-NODE-FORWARD
    mkdir -p "$CLUSTER_DIR/node/cni" "$CLUSTER_DIR/node/cni-ipam"
    cat > "$CLUSTER_DIR/node/cni/10-connectors.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "connectors-playground",
  "plugins": [
    {"type": "bridge", "bridge": "$POD_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$CLUSTER_DIR/node/cni-ipam",
              "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

node_containerd() {
    local d="$CLUSTER_DIR/node"
    mkdir -p "$d/containerd" "$d/certs.d" "$CONTAINERD_STATE"
    # Registries on the internet are dead ends: a pull of an image that is not here fails at once on a local
    # port instead of resolving a name outside.
    for host in docker.io registry.k8s.io quay.io ghcr.io gcr.io; do
        mkdir -p "$d/certs.d/$host"
        printf 'server = "http://127.0.0.1:9"\n[host."http://127.0.0.1:9"]\n  capabilities = ["pull", "resolve"]\n' \
            > "$d/certs.d/$host/hosts.toml"
    done
    # The proxy speaks plain HTTP; where it is exposed to the node (docs/kubernetes.md, "Pod image pull via
    # connector": NodePort $PROXY_NODEPORT on the node's address), containerd must pull over HTTP.
    mkdir -p "$d/certs.d/$NODE_IP:$PROXY_NODEPORT"
    printf 'server = "http://%s:%s"\n[host."http://%s:%s"]\n  capabilities = ["pull", "resolve"]\n' \
        "$NODE_IP" "$PROXY_NODEPORT" "$NODE_IP" "$PROXY_NODEPORT" > "$d/certs.d/$NODE_IP:$PROXY_NODEPORT/hosts.toml"
    cat > "$d/containerd.toml" <<TOML
version = 3
root = "$d/containerd"
state = "$CONTAINERD_STATE"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = 'registry.k8s.io/pause:3.10.2'
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = '$d/certs.d'
[plugins.'io.containerd.cri.v1.runtime']
  # This VM's root lacks CAP_SYS_RESOURCE, so no process may lower its oom_score_adj (runc failed with "failed to
  # update /proc/self/oom_score_adj: Permission denied" for every pod sandbox): keep scores at containerd's own.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = '$(command -v runc)'
      Root = '$CONTAINERD_STATE/runc'
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = '$d/cni'
TOML
    PATH="$SHIM_BIN:$PATH" start_component containerd "$CONTAINERD_BIN/containerd" --config "$d/containerd.toml"
    local deadline=$((SECONDS + 60))
    until "$CONTAINERD_BIN/ctr" -a "$CONTAINERD_SOCK" version >/dev/null 2>&1; do
        running containerd || die "containerd exited; see $CLUSTER_DIR/logs/containerd.log"
        [ "$SECONDS" -lt "$deadline" ] || die "containerd not answering after 60 s; see $CLUSTER_DIR/logs/containerd.log"
        sleep 0.5
    done
    local tar
    for tar in $IMAGES $CONNECTORS_IMAGE_TAR; do
        "$CONTAINERD_BIN/ctr" -a "$CONTAINERD_SOCK" -n k8s.io images import "$tar" >/dev/null 2>>"$CLUSTER_DIR/logs/ctr-import.log"
    done
}

node_kubelet() {
    local d="$CLUSTER_DIR/node"
    mkdir -p "$KUBELET_ROOT" "$d/pod-logs"
    touch "$CLUSTER_DIR/node/.created-kubelet-root"
    : > "$d/resolv.conf"   # pods with dnsPolicy Default get no name server from the machine (no query leaves)
    cat > "$d/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $CLUSTER_DIR/pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
resolvConf: $d/resolv.conf
podLogsDir: $d/pod-logs
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
syncFrequency: 10s
${KUBELET_EXTRA_CONFIG:-}
YAML
    local provider_flags=()
    if [ -n "${CONNECTORS_HOST_BINARY:-}" ]; then
        # Pods pulling from the proxy's NodePort get the pod's own ServiceAccount token as the password
        # (`connectors credential-provider`): no imagePullSecret, no stored token.
        mkdir -p "$d/credential-providers"
        ln -sf "$CONNECTORS_HOST_BINARY" "$d/credential-providers/connectors"
        cat > "$d/credential-providers.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: connectors
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args: [credential-provider]
    matchImages: ["$NODE_IP:$PROXY_NODEPORT"]
    defaultCacheDuration: 0s
    tokenAttributes:
      serviceAccountTokenAudience: connectors-proxy
      cacheType: Token
      requireServiceAccount: true
YAML
        provider_flags=(--image-credential-provider-config "$d/credential-providers.yaml"
                        --image-credential-provider-bin-dir "$d/credential-providers")
    fi
    start_component kubelet "$NODE_BIN/kubelet" --config "$d/kubelet.yaml" "${provider_flags[@]}" \
        --kubeconfig "$CLUSTER_DIR/kubelet.kubeconfig" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
        --root-dir "$KUBELET_ROOT" --cert-dir "$d/kubelet-pki" ${KUBELET_EXTRA_FLAGS:-}
}

node_scheduler() {
    start_component kube-scheduler "$NODE_BIN/kube-scheduler" \
        --kubeconfig "$CLUSTER_DIR/kube-scheduler.kubeconfig" \
        --authentication-kubeconfig "$CLUSTER_DIR/kube-scheduler.kubeconfig" \
        --authorization-kubeconfig "$CLUSTER_DIR/kube-scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false
}

node_proxy() {
    local d="$CLUSTER_DIR/node"
    cat > "$d/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $CLUSTER_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
nodePortAddresses: ["$NODE_IP/32"]
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
conntrack: {maxPerCore: 0}
YAML
    start_component kube-proxy "$NODE_BIN/kube-proxy" --config "$d/kube-proxy.yaml"
}

node_apiserver_forward() {
    start_component apiserver-forward socat "TCP-LISTEN:$APISERVER_PORT,bind=$NODE_IP,fork,reuseaddr" \
        "TCP:127.0.0.1:$APISERVER_PORT"
}

k() { "$BIN/kubectl" --kubeconfig "$CLUSTER_DIR/admin.kubeconfig" "$@"; }

# The kubelet may ask for tokens with the proxy's audience for the credential provider (the API server's node
# audience restriction otherwise refuses audiences that no volume of the pod names).
node_rbac() {
    k apply -f - >/dev/null <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "connectors-playground:kubelet-proxy-audience"}
rules:
  - apiGroups: [""]
    resources: [connectors-proxy]
    verbs: [request-serviceaccounts-token-audience]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "connectors-playground:kubelet-proxy-audience"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "connectors-playground:kubelet-proxy-audience"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:nodes}]
YAML
}

node_dns() {
    awk -v ip="$NODE_IP" -v names="$NODE_HOSTS" -v dns="$DNS_IP" '
        $1 == "@HOSTS@" { n = split(names, a, " "); for (i = 1; i <= n; i++) print "    " ip " " a[i]; next }
        { gsub(/@DNS_IP@/, dns); print }' "$root/testground/node/coredns.yaml" | k apply -f - >/dev/null
}

node_wait_ready() {
    local deadline=$((SECONDS + ${NODE_START_TIMEOUT:-180}))
    until k get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True; do
        running kubelet || die "the kubelet exited; last lines of $CLUSTER_DIR/logs/kubelet.log:
$(tail -n 20 "$CLUSTER_DIR/logs/kubelet.log")"
        [ "$SECONDS" -lt "$deadline" ] || die "node $NODE_NAME not Ready after ${NODE_START_TIMEOUT:-180} s; see $CLUSTER_DIR/logs/kubelet.log"
        sleep 1
    done
    k -n kube-system rollout status deployment/coredns --timeout="${NODE_START_TIMEOUT:-180}s" >/dev/null \
        || die "CoreDNS did not become ready; see: kubectl -n kube-system describe pod -l k8s-app=kube-dns"
}

# connectors from deploy/, with the image built here (testground/node/connectors: an overlay of deploy/).
node_install_connectors() {
    # The first apply may reach the ConnectorClass before its CRD is established: wait, then apply again.
    if ! k apply --server-side -k "$root/testground/node/connectors" >/dev/null 2>&1; then
        k wait --for condition=established --timeout=60s crd/connectors.connectors.alauda.io crd/connectorclasses.connectors.alauda.io >/dev/null
        k apply --server-side -k "$root/testground/node/connectors" >/dev/null
    fi
    local w
    for w in deployment/connectors-proxy deployment/connectors-controller-manager daemonset/connectors-csi; do
        k -n connectors-system rollout status "$w" --timeout="${NODE_START_TIMEOUT:-180}s" >/dev/null \
            || die "$w did not become ready; see: kubectl -n connectors-system describe pods"
    done
}

node_up() {
    log "building or finding the node's binaries and images (cached in ${TESTGROUND_CACHE:-/var/cache/connectors-testground})"
    node_build
    KUBELET_PORT=$(free_port); KUBELET_HEALTHZ_PORT=$(free_port); SCHEDULER_PORT=$(free_port)
    KUBE_PROXY_HEALTHZ_PORT=$(free_port); KUBE_PROXY_METRICS_PORT=$(free_port)
    cat >> "$CLUSTER_DIR/cluster.env" <<ENV
NODE_BIN=$NODE_BIN
CONTAINERD_BIN=$CONTAINERD_BIN
SHIM_BIN=$SHIM_BIN
KUBELET_PORT=$KUBELET_PORT
KUBELET_HEALTHZ_PORT=$KUBELET_HEALTHZ_PORT
SCHEDULER_PORT=$SCHEDULER_PORT
KUBE_PROXY_HEALTHZ_PORT=$KUBE_PROXY_HEALTHZ_PORT
KUBE_PROXY_METRICS_PORT=$KUBE_PROXY_METRICS_PORT
ENV
    node_pki
    node_network
}

# After the control plane is ready.
node_start() {
    local start=$SECONDS
    node_apiserver_forward
    node_scheduler
    node_containerd
    node_proxy
    node_kubelet
    node_rbac
    node_dns
    node_wait_ready
    log "node $NODE_NAME Ready in $((SECONDS - start)) s"
    if [ "${NODE_CONNECTORS:-1}" = 1 ]; then
        node_install_connectors
        log "connectors installed (namespace connectors-system, image connectors:dev)"
    fi
    log "host address for pods: $NODE_IP"
}

node_status() {
    echo "node:           $NODE_NAME ($NODE_IP)"
    echo "host address for pods: $NODE_IP"
    local c
    for c in apiserver-forward kube-scheduler containerd kube-proxy kubelet; do
        if running "$c"; then echo "$c: running (pid $(pid_of "$c"))"; else echo "$c: stopped"; fi
    done
    k get node "$NODE_NAME" --no-headers 2>/dev/null || echo "node: not registered"
}

ctr_() { "$CONTAINERD_BIN/ctr" -a "$CONTAINERD_SOCK" "$@"; }

# The kubelet's own chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY), which kube-proxy --cleanup leaves: every
# KUBE-* chain is ours, since up refuses to start where another kubelet ran.
iptables_cleanup_kube() {
    local ipt table rule chain
    for ipt in iptables ip6tables; do
        command -v "$ipt" >/dev/null || continue
        for table in filter nat mangle; do
            { "$ipt" -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' || true; } | while read -r rule; do
                # shellcheck disable=SC2086
                "$ipt" -t "$table" ${rule/-A/-D} 2>/dev/null || true
            done
            for chain in $("$ipt" -t "$table" -S 2>/dev/null | awk '/^-N KUBE-/{print $2}'); do
                "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
            done
            for chain in $("$ipt" -t "$table" -S 2>/dev/null | awk '/^-N KUBE-/{print $2}'); do
                "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
            done
        done
    done
}

# Runs under `set -e`: every step tolerates what is already gone.
node_down() {
    stop_component kubelet
    if [ -n "${CONTAINERD_BIN:-}" ] && running containerd; then
        local t
        for t in $(ctr_ -n k8s.io tasks ls -q 2>/dev/null); do ctr_ -n k8s.io tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
        sleep 1
        for t in $(ctr_ -n k8s.io tasks ls -q 2>/dev/null); do ctr_ -n k8s.io tasks rm -f "$t" >/dev/null 2>&1 || true; done
    fi
    for c in kube-proxy kube-scheduler apiserver-forward containerd; do stop_component "$c"; done
    # Shims outlive containerd by design; ours are the ones started for our socket.
    pkill -KILL -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true
    local m
    for m in $(awk '{print $2}' /proc/self/mounts | { grep -E "^($KUBELET_ROOT|$CONTAINERD_STATE|/run/netns/cni-|/var/run/netns/cni-)" || true; } | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do ip netns del "$ns" 2>/dev/null || true; done
    if [ -n "${NODE_BIN:-}" ]; then "$NODE_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
    iptables_cleanup_kube
    iptables -D FORWARD -j CONNECTORS-NODE-FORWARD 2>/dev/null || true
    iptables -F CONNECTORS-NODE-FORWARD 2>/dev/null || true
    iptables -X CONNECTORS-NODE-FORWARD 2>/dev/null || true
    ip link del "$POD_BRIDGE" 2>/dev/null || true
    ip addr del "$NODE_IP/32" dev lo 2>/dev/null || true
    if [ -f "$CLUSTER_DIR/node/.created-kubelet-root" ]; then rm -rf "$KUBELET_ROOT"; fi
    rm -rf "$CONTAINERD_STATE"
    if [ -f "$CLUSTER_DIR/.created-var-log-containers" ]; then rm -rf /var/log/containers; fi
}
