#!/usr/bin/env bash
# A real Kubernetes control plane on this machine, for trying the Kubernetes mode and for the tests:
# etcd, kube-apiserver and kube-controller-manager built from their Go modules (testground/k8s/build.sh,
# cached outside the clone), all on 127.0.0.1, as processes. With --node, also a node that runs pods.
#
#   scripts/cluster.sh up                 build if needed, start, wait for /readyz, print `export KUBECONFIG=…`
#   scripts/cluster.sh up --node          and a node: kube-scheduler, containerd + runc, CNI bridge, kubelet,
#                                         kube-proxy, CoreDNS, with connectors installed from deploy/ (image
#                                         connectors:dev; also connectors-playground/tools:latest); needs root
#   scripts/cluster.sh status             what runs, where, and whether the API server is ready
#   scripts/cluster.sh down               stop everything and delete the cluster folder
#   scripts/cluster.sh stop|start COMPONENT   stop or start one of etcd, kube-apiserver, kube-controller-manager
#                                         (its data kept; the tests use this to take the API server away)
#
#   CLUSTER_DIR   the cluster's folder: certificates, etcd data, logs, kubeconfigs (default /tmp/connectors-cluster)
#   NODE_CONNECTORS=0   with --node: do not install connectors (a bare node)
#
# The API server runs with --authorization-mode=Node,RBAC and signs ServiceAccount tokens with its own key, so
# TokenReview, SubjectAccessReview, CRD validation, server-side apply and watches are the real thing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
CLUSTER_DIR="${CLUSTER_DIR:-/tmp/connectors-cluster}"
# Ranges the cluster allocates from (nothing is routed to them without a node).
SERVICE_CIDR="${SERVICE_CIDR:-10.96.0.0/16}"
SERVICE_IP="${SERVICE_CIDR%.*/*}.1"   # the `kubernetes` Service's address: first of the range
CONTROLLERS="serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,garbage-collector-controller,namespace-controller,clusterrole-aggregation-controller"

die() { echo "cluster: $*" >&2; exit 1; }
log() { echo "cluster: $*" >&2; }
# shellcheck source=scripts/cluster-node.sh
. "$root/scripts/cluster-node.sh"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pid_of() { cat "$CLUSTER_DIR/pids/$1" 2>/dev/null || true; }
running() { local p; p="$(pid_of "$1")"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

# --- certificates ------------------------------------------------------------------------------------
make_pki() {
    local d="$CLUSTER_DIR/pki"
    mkdir -p "$d"
    (
        cd "$d"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj /CN=connectors-test-cluster-ca \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
        # API server serving certificate: every name a client inside or outside the cluster uses.
        openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver 2>/dev/null
        printf 'subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:%s,IP:%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' \
            "$SERVICE_IP" "$NODE_IP" > apiserver.ext
        openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 365 \
            -extfile apiserver.ext 2>/dev/null
        # ServiceAccount token signing key pair.
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
        openssl pkey -in sa.key -pubout -out sa.pub
        client_cert admin admin system:masters
        client_cert kube-controller-manager system:kube-controller-manager ""
        rm -f ./*.csr ./*.ext
    )
}

# client_cert FILE CN O — a client certificate signed by the cluster CA (the API server trusts it as CN/O).
client_cert() {
    local subj="/CN=$2"
    [ -n "$3" ] && subj="/O=$3/CN=$2"
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$subj" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 365 \
        -extfile "$1.ext" 2>/dev/null
}

# kubeconfig FILE USER — a kubeconfig with the client certificate pki/USER.{crt,key}.
kubeconfig() {
    local pki="$CLUSTER_DIR/pki"
    cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: connectors-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: $2@connectors-test
  context: {cluster: connectors-test, user: $2, namespace: default}
current-context: $2@connectors-test
KC
    chmod 600 "$1"
}

# --- components ----------------------------------------------------------------------------------------
start_component() {
    local name="$1"; shift
    if running "$name"; then return 0; fi
    # setsid: its own process group, so `down` can end it and any child it forks.
    setsid "$@" >>"$CLUSTER_DIR/logs/$name.log" 2>&1 < /dev/null &
    echo $! > "$CLUSTER_DIR/pids/$name"
}

start_etcd() {
    start_component etcd "$BIN/etcd" --name default --data-dir "$CLUSTER_DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" \
        --unsafe-no-fsync --quota-backend-bytes 2147483648 --log-level warn
}

start_apiserver() {
    local pki="$CLUSTER_DIR/pki" advertise=127.0.0.1 node_flags=()
    if [ "${NODE:-0}" = 1 ]; then
        # Pods reach the API server at $NODE_IP (socat forward to 127.0.0.1); it reaches the kubelet with a cert.
        advertise=$NODE_IP
        # InternalIP only: the node's name resolves nowhere, and looking it up would send a query out.
        node_flags=(--kubelet-client-certificate "$pki/apiserver-kubelet-client.crt"
                    --kubelet-client-key "$pki/apiserver-kubelet-client.key"
                    --kubelet-preferred-address-types InternalIP)
    fi
    start_component kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address 127.0.0.1 --advertise-address "$advertise" --secure-port "$APISERVER_PORT" \
        --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
        --client-ca-file "$pki/ca.crt" \
        --authorization-mode Node,RBAC \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --allow-privileged=true --profiling=false \
        --cert-dir "$CLUSTER_DIR/apiserver-certs" \
        "${node_flags[@]}" ${APISERVER_EXTRA_FLAGS:-}
}

start_controller_manager() {
    local pki="$CLUSTER_DIR/pki" controllers=$CONTROLLERS
    # A node runs workloads: Deployments, DaemonSets, Jobs, EndpointSlices, node lifecycle… (all defaults).
    [ "${NODE:-0}" = 1 ] && controllers='*'
    start_component kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig "$CLUSTER_DIR/kube-controller-manager.kubeconfig" \
        --authentication-kubeconfig "$CLUSTER_DIR/kube-controller-manager.kubeconfig" \
        --authorization-kubeconfig "$CLUSTER_DIR/kube-controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
        --controllers "$controllers" \
        --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
        --use-service-account-credentials=true --leader-elect=false --authentication-skip-lookup=true \
        --cert-dir "$CLUSTER_DIR/kcm-certs"
}

wait_ready() {
    local deadline=$((SECONDS + ${CLUSTER_START_TIMEOUT:-120}))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if [ "$(curl -s --max-time 2 --cacert "$CLUSTER_DIR/pki/ca.crt" \
                --cert "$CLUSTER_DIR/pki/admin.crt" --key "$CLUSTER_DIR/pki/admin.key" \
                "https://127.0.0.1:$APISERVER_PORT/readyz" || true)" = ok ]; then
            return 0
        fi
        running kube-apiserver || die "kube-apiserver exited; last lines of $CLUSTER_DIR/logs/kube-apiserver.log:
$(tail -n 20 "$CLUSTER_DIR/logs/kube-apiserver.log")"
        sleep 0.5
    done
    die "kube-apiserver not ready after ${CLUSTER_START_TIMEOUT:-120} s; see $CLUSTER_DIR/logs/"
}

load_env() {
    [ -f "$CLUSTER_DIR/cluster.env" ] || die "no cluster in $CLUSTER_DIR (run: scripts/cluster.sh up)"
    # shellcheck disable=SC1091
    . "$CLUSTER_DIR/cluster.env"
}

# --- commands --------------------------------------------------------------------------------------------
cmd_up() {
    local with_node=0
    case "${1:-}" in --node) with_node=1 ;; "") ;; *) die "usage: $0 up [--node]" ;; esac
    if [ -f "$CLUSTER_DIR/cluster.env" ]; then
        load_env
        if running kube-apiserver; then
            log "already up in $CLUSTER_DIR"
            echo "export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig"
            return 0
        fi
        die "$CLUSTER_DIR holds a stopped cluster; run scripts/cluster.sh down first (or start COMPONENT)"
    fi
    BIN="$("$root/testground/k8s/build.sh")"
    mkdir -p "$CLUSTER_DIR"/{logs,pids,etcd}
    chmod 700 "$CLUSTER_DIR"
    ETCD_PORT=$(free_port); ETCD_PEER_PORT=$(free_port); APISERVER_PORT=$(free_port); KCM_PORT=$(free_port)
    cat > "$CLUSTER_DIR/cluster.env" <<ENV
BIN=$BIN
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
KCM_PORT=$KCM_PORT
ENV
    make_pki
    kubeconfig "$CLUSTER_DIR/admin.kubeconfig" admin
    kubeconfig "$CLUSTER_DIR/kube-controller-manager.kubeconfig" kube-controller-manager
    if [ "$with_node" = 1 ]; then
        node_preflight
        NODE=1
        node_up
    fi
    local start=$SECONDS
    start_etcd
    start_apiserver
    wait_ready
    start_controller_manager
    ln -sf "$BIN/kubectl" "$CLUSTER_DIR/kubectl"
    log "ready in $((SECONDS - start)) s: https://127.0.0.1:$APISERVER_PORT ($("$BIN/kube-apiserver" --version))"
    log "kubectl: $BIN/kubectl (also $CLUSTER_DIR/kubectl)"
    if [ "$with_node" = 1 ]; then node_start; fi
    echo "export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig"
}

cmd_status() {
    load_env
    echo "cluster folder: $CLUSTER_DIR"
    echo "api server:     https://127.0.0.1:$APISERVER_PORT"
    echo "kubeconfig:     $CLUSTER_DIR/admin.kubeconfig"
    echo "kubectl:        $BIN/kubectl"
    for c in etcd kube-apiserver kube-controller-manager; do
        if running "$c"; then echo "$c: running (pid $(pid_of "$c"))"; else echo "$c: stopped"; fi
    done
    local ready
    ready="$(curl -s --max-time 2 --cacert "$CLUSTER_DIR/pki/ca.crt" --cert "$CLUSTER_DIR/pki/admin.crt" \
        --key "$CLUSTER_DIR/pki/admin.key" "https://127.0.0.1:$APISERVER_PORT/readyz" || true)"
    echo "readyz:         ${ready:-no answer}"
    if [ "${NODE:-0}" = 1 ]; then node_status; fi
    [ "$ready" = ok ]
}

stop_component() {
    local p; p="$(pid_of "$1")"
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
        kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
        while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$CLUSTER_DIR/pids/$1"
}

cmd_down() {
    [ -d "$CLUSTER_DIR" ] || { log "nothing in $CLUSTER_DIR"; return 0; }
    if [ -f "$CLUSTER_DIR/cluster.env" ]; then
        # shellcheck disable=SC1091
        . "$CLUSTER_DIR/cluster.env"
        if [ "${NODE:-0}" = 1 ]; then node_down; fi
        for c in kube-controller-manager kube-apiserver etcd; do stop_component "$c"; done
    fi
    # Nothing of ours may stay mounted below the folder (the node tier mounts there).
    if grep -q " $CLUSTER_DIR/" /proc/self/mounts 2>/dev/null; then
        grep " $CLUSTER_DIR/" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l
    fi
    rm -rf "$CLUSTER_DIR"
    log "down; $CLUSTER_DIR removed"
}

cmd_stop() {
    load_env
    case "$1" in etcd|kube-apiserver|kube-controller-manager) stop_component "$1" ;; *) die "unknown component $1" ;; esac
}

cmd_start() {
    load_env
    case "$1" in
        etcd) start_etcd ;;
        kube-apiserver) start_apiserver; wait_ready ;;
        kube-controller-manager) start_controller_manager ;;
        *) die "unknown component $1" ;;
    esac
}

case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    status) cmd_status ;;
    down) cmd_down ;;
    stop) [ $# -eq 2 ] || die "usage: $0 stop COMPONENT"; cmd_stop "$2" ;;
    start) [ $# -eq 2 ] || die "usage: $0 start COMPONENT"; cmd_start "$2" ;;
    -h|--help|help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
