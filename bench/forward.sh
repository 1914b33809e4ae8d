#!/usr/bin/env bash
# Forward mode: 1 GiB blob pull over HTTPS, registry direct vs through the Connectors proxy's forward
# (TLS-intercepting) mode, with mitmproxy and squid ssl-bump as peers; and the latency a fresh
# intercepted connection adds to its first request.
#
#   bench/forward.sh [--markdown] [--help]
#
# Everything runs on 127.0.0.1 (the registry is addressed as registry.test, see bench/README.md), in a
# fresh mktemp directory, and every process the script starts is killed by PID on exit. Progress goes
# to stderr; the Markdown report (paste into bench/RESULTS.md) goes to stdout.
#
# Environment:
#   SIZE_MIB=1024        size of the random blob
#   RUNS=5               timed pulls per path (median reported)
#   LAT_N=200            fresh connections per path for the first-request latency (one curl each)
#   COLD_RUNS=5          fresh proxy processes, each measured on its first (cold: leaf minted) connection
#   PEERS=auto           auto|all|none|"mitm squid": the peers (auto = those present or installable)
#   REG_HOST=registry.test  the registry's name; must map to 127.0.0.1 in /etc/hosts for the squid peer
#   REG_KEY=rsa          rsa|ec: the registry's server key (RSA-2048 or ECDSA P-256; the proxy's leaves are P-256)
#   THREADS=N            pass --threads N to the proxy (default: its own, one worker per CPU)
#   CONNECTORS_BIN=...   use this proxy binary instead of `cargo build --release -p connectors`
#   NO_BUILD=1           do not run cargo; use $CARGO_TARGET_DIR/release/connectors (or target/…) as is
#   NO_INSTALL=1         never call apt-get (fail / skip peers if something is missing)
#   KEEP=1               keep the work directory (logs, configs) and print its path
#   BENCH_TMPDIR=DIR     where to create the work directory (default $TMPDIR or /tmp); needs ~2×SIZE_MIB free
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
for arg in "$@"; do
  case "$arg" in
    --markdown) ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-5}
LAT_N=${LAT_N:-200}
COLD_RUNS=${COLD_RUNS:-5}
PEERS=${PEERS:-auto}
REG_HOST=${REG_HOST:-registry.test}
REG_KEY=${REG_KEY:-rsa}
SCRIPT_NAME=forward.sh
TOKEN=""
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BIG_PATHS=(blob.bin registry/data)
BENCH_DIR=$REPO_ROOT/bench

# ---------------------------------------------------------------- packages
need_install=()
command -v docker-registry >/dev/null || need_install+=(docker-registry)
command -v htpasswd >/dev/null || need_install+=(apache2-utils)
command -v curl >/dev/null || need_install+=(curl)
command -v openssl >/dev/null || need_install+=(openssl)
# the squid peer needs the name in /etc/hosts (squid resolves it itself; nothing may leave loopback)
hosts_ok=0
[ "$(getent hosts "$REG_HOST" | awk '{print $1; exit}')" = 127.0.0.1 ] && hosts_ok=1
PEER_LIST=()
case "$PEERS" in
  none|0|no) ;;
  all|1|yes) PEER_LIST=(mitm squid) ;;
  auto)
    for p in mitm squid; do
      case $p in
        mitm) have=$(command -v mitmdump || true) ;;
        squid) have=$( [ -x /usr/lib/squid/security_file_certgen ] && command -v squid || true) ;;
      esac
      if [ "$p" = squid ] && [ $hosts_ok = 0 ]; then log "$REG_HOST is not 127.0.0.1 in /etc/hosts: skipping the squid peer"; continue; fi
      if [ -n "$have" ] || can_install; then PEER_LIST+=("$p"); else log "$p not available: skipping that peer"; fi
    done ;;
  *) read -r -a PEER_LIST <<<"$PEERS" ;;
esac
for p in "${PEER_LIST[@]}"; do
  case $p in
    mitm) command -v mitmdump >/dev/null || need_install+=(mitmproxy) ;;
    squid) { [ -x /usr/lib/squid/security_file_certgen ] && command -v squid >/dev/null; } || need_install+=(squid-openssl)
           [ $hosts_ok = 1 ] || die "the squid peer needs '127.0.0.1 $REG_HOST' in /etc/hosts" ;;
    *) die "unknown peer $p (PEERS: auto, all, none or a list of mitm squid)" ;;
  esac
done
apt_install "${need_install[@]}"
command -v sha256sum >/dev/null || die "sha256sum (coreutils) is required"

build_proxy
make_workdir connectors-forward-bench $(( SIZE_MIB * 1024 * 2 + 262144 ))

# ---------------------------------------------------------------- certificates
# The registry's private CA and its server certificate (SANs: the name, localhost, 127.0.0.1; Go needs SANs).
CERTS=$WORK/certs
mkdir -m 0700 "$CERTS"
(
  cd "$CERTS"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj '/CN=forward-bench registry CA' \
    -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null
  case "$REG_KEY" in
    rsa) keyopt=(-newkey rsa:2048) ;;
    ec)  keyopt=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
    *)   echo "REG_KEY must be rsa or ec" >&2; exit 1 ;;
  esac
  openssl req "${keyopt[@]}" -nodes -keyout server.key -out server.csr -subj "/CN=$REG_HOST" 2>/dev/null
  printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$REG_HOST" > server.ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 30 -extfile server.ext 2>/dev/null
) || die "openssl failed to make the registry certificates"
REG_CA=$CERTS/ca.crt

# ---------------------------------------------------------------- registry (TLS, htpasswd)
start_registry "$CERTS/server.crt" "$CERTS/server.key"
ORIGIN=https://$REG_HOST:$REG_PORT
DIRECT_ARGS=(--cacert "$REG_CA" --resolve "$REG_HOST:$REG_PORT:127.0.0.1" -u "$USER_NAME:$USER_PASS")
wait_http "$ORIGIN/v2/" "$REG_PID" registry --cacert "$REG_CA" --resolve "$REG_HOST:$REG_PORT:127.0.0.1"
code=$(curl -s -o /dev/null -w '%{http_code}' --http1.1 "${DIRECT_ARGS[@]}" "$ORIGIN/v2/")
[ "$code" = 200 ] || die "registry rejects $USER_NAME over TLS (GET /v2/ → $code)"
log "registry on $ORIGIN → 127.0.0.1 (pid $REG_PID)"

# ---------------------------------------------------------------- the proxy (forward mode)
mkdir -m 0700 -p "$WORK/proxy"
{
  cat <<EOF
apiVersion: v1
kind: Secret
metadata: {name: reg-auth, namespace: $NS}
type: cpaas.io/distribution-registry-token
stringData: {username: $USER_NAME, password: $USER_PASS}
---
apiVersion: v1
kind: Secret
metadata: {name: reg-ca, namespace: $NS}
type: Opaque
stringData:
  ca.crt: |
EOF
  sed 's/^/    /' "$REG_CA"
  cat <<EOF
---
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {name: $CONN, namespace: $NS}
spec:
  connectorClassName: oci
  address: $ORIGIN
  auth: {name: tokenAuth, secretRef: {name: reg-auth}}
  caCertSecretRef: {name: reg-ca}
EOF
} > "$WORK/proxy/catalog.yaml"
PROXY_UP_ARGS=(--resolve "$REG_HOST:$REG_PORT:127.0.0.1")
[ -n "${THREADS:-}" ] && PROXY_UP_ARGS+=(--threads "$THREADS")
PROXY_CA=$WORK/proxy/state/ca.crt
proxy_args() { PROXY_ARGS=(-x "http://$NS%2F$CONN:$TOKEN@$PROXY_ADDR" --cacert "$PROXY_CA"); }

# ---------------------------------------------------------------- helpers
# per path kind: curl arguments that reach $ORIGIN that way (credentials, trust, proxy)
args_of() {
  case "$1" in
    direct) printf '%s\0' "${DIRECT_ARGS[@]}" ;;
    proxy)  printf '%s\0' "${PROXY_ARGS[@]}" ;;
    mitm)   printf '%s\0' -x "http://127.0.0.1:$MITM_PORT" --cacert "$MITM_CA" ;;
    squid)  printf '%s\0' -x "http://127.0.0.1:$SQUID_PORT" --cacert "$SQUID_CA" ;;
  esac
}
curl_k() {  # kind, curl args...
  local kind=$1 a=(); shift
  mapfile -d '' a < <(args_of "$kind")
  curl --http1.1 "${a[@]}" "$@"
}
label_of() {
  case "$1" in
    direct) echo "registry direct, HTTPS (Basic, htpasswd)" ;;
    proxy)  echo "**Connectors proxy**, forward mode (CONNECT, TLS intercepted, Basic injected)" ;;
    mitm)   echo "mitmproxy peer (mitmdump, stream_large_bodies=1m, Basic injected by an addon)" ;;
    squid)  echo "squid ssl-bump peer (request_header_add Authorization)" ;;
  esac
}

# push_direct FILE REPO DIGEST: monolithic upload straight to the registry (POST + PUT)
push_direct() {
  local file=$1 repo=$2 digest=$3 hdrs loc code
  hdrs=$(curl -sS --fail --http1.1 "${DIRECT_ARGS[@]}" -D - -o /dev/null -X POST "$ORIGIN/v2/$repo/blobs/uploads/") \
    || die "POST $repo/blobs/uploads/ failed"
  loc=$(printf '%s\n' "$hdrs" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}' | tail -1)
  case "$loc" in /*) loc=$ORIGIN$loc ;; https://*) ;; *) die "unexpected upload Location '$loc'" ;; esac
  case "$loc" in *\?*) loc="$loc&digest=$digest" ;; *) loc="$loc?digest=$digest" ;; esac
  code=$(curl -sS --http1.1 "${DIRECT_ARGS[@]}" -o "$WORK/put.body" -w '%{http_code}' -H 'Expect:' \
    -H 'Content-Type: application/octet-stream' -T "$file" "$loc") || die "PUT $repo blob failed"
  [ "$code" = 201 ] || die "PUT $repo blob → $code $(head -c 400 "$WORK/put.body")"
}
sha_of() { echo "sha256:$(sha256sum "$1" | awk '{print $1}')"; }

# ---------------------------------------------------------------- the blob and a small image
BLOB=$WORK/blob.bin
log "writing $SIZE_MIB MiB of random data"
head -c "$((SIZE_MIB * 1048576))" /dev/urandom > "$BLOB"
SIZE=$(stat -c %s "$BLOB")
DIGEST=$(sha_of "$BLOB")
log "blob $DIGEST ($SIZE bytes); pushing it directly (HTTPS)"
t0=$(date +%s.%N)
push_direct "$BLOB" "$NS/big" "$DIGEST"
SEED_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
# a small image (config + one 4 KiB layer) for the latency test: GET of its manifest
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > "$WORK/config.json"
head -c 4096 /dev/urandom > "$WORK/layer.bin"
CFG_D=$(sha_of "$WORK/config.json"); LAYER_D=$(sha_of "$WORK/layer.bin")
push_direct "$WORK/config.json" "$NS/small" "$CFG_D"
push_direct "$WORK/layer.bin" "$NS/small" "$LAYER_D"
MT=application/vnd.oci.image.manifest.v1+json
printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":4096}]}' \
  "$MT" "$CFG_D" "$(stat -c %s "$WORK/config.json")" "$LAYER_D" > "$WORK/manifest.json"
code=$(curl -sS --http1.1 "${DIRECT_ARGS[@]}" -o "$WORK/put.body" -w '%{http_code}' -X PUT -H "Content-Type: $MT" \
  --data-binary "@$WORK/manifest.json" "$ORIGIN/v2/$NS/small/manifests/v1")
[ "$code" = 201 ] || die "PUT manifest → $code $(head -c 400 "$WORK/put.body")"
MANIFEST_URL=$ORIGIN/v2/$NS/small/manifests/v1
MANIFEST_SIZE=$(stat -c %s "$WORK/manifest.json")

# ---------------------------------------------------------------- first-request latency
# curl -w fields per connection: connect (TCP to the registry or the relay), appconnect (+ CONNECT and
# the TLS handshake with the registry or the relay's minted leaf), starttransfer, total.
LAT=$WORK/latency.tsv   # kind phase i connect appconnect starttransfer total code
: > "$LAT"
W='%{time_connect} %{time_appconnect} %{time_starttransfer} %{time_total} %{http_code}'
lat_once() {  # kind phase i
  local out
  out=$(curl_k "$1" -sS -o /dev/null -H "Accept: $MT" -w "$W" "$MANIFEST_URL") || die "$1 latency GET failed"
  set -- "$1" "$2" "$3" $out
  [ "$8" = 200 ] || die "$1 latency GET → $8"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$LAT"
}

# Cold: COLD_RUNS fresh proxy processes (same state dir, so the same CA). The first connection of each
# mints the leaf for $REG_HOST and dials the registry (TLS handshake upstream); the second reuses both.
log "latency: $COLD_RUNS cold proxy starts"
for i in $(seq "$COLD_RUNS"); do
  start_proxy "$WORK/proxy/catalog.yaml" "${PROXY_UP_ARGS[@]}"
  proxy_args
  lat_once proxy cold "$i"
  lat_once proxy second "$i"
  stop_pid "$PROXY_PID"
done

# the proxy used from here on
start_proxy "$WORK/proxy/catalog.yaml" "${PROXY_UP_ARGS[@]}"
proxy_args
[ -s "$PROXY_CA" ] || die "the proxy wrote no CA at $PROXY_CA"
RSS_START_KB=$(proxy_status VmRSS)
FD_START=$(ls "/proc/$PROXY_PID/fd" | wc -l)
log "proxy on $PROXY_ADDR (pid $PROXY_PID), $(grep '^connector ' "$WORK/proxy.out" | head -1)"
# sanity: the registry accepts what the proxy sends without client credentials, and the certificate the
# client sees is the proxy's (a plain tunnel would fail verification against the proxy CA)
code=$(curl -sS --http1.1 "${PROXY_ARGS[@]}" -o /dev/null -w '%{http_code}' "$ORIGIN/v2/") || die "GET /v2/ through the proxy failed"
[ "$code" = 200 ] || die "GET /v2/ through the proxy → $code (credentials not injected?)"
issuer=$(curl -sS --http1.1 "${PROXY_ARGS[@]}" -o /dev/null -w '%{certs}' "$ORIGIN/v2/" 2>/dev/null | awk -F': *' '/^Issuer:/{print $2; exit}' || true)
# no proxy credentials: the CONNECT should be refused (407)
NO_AUTH_CODE=$(curl -s --http1.1 -x "http://$PROXY_ADDR" --cacert "$PROXY_CA" -o /dev/null -w '%{http_connect}' "$ORIGIN/v2/" || true)

# ---------------------------------------------------------------- peers
MITM_PORT=""; SQUID_PORT=""
for p in "${PEER_LIST[@]}"; do
  case $p in
  mitm)
    MITM_PORT=$(free_port)
    mkdir -p "$WORK/mitm"
    BASIC=$(printf '%s:%s' "$USER_NAME" "$USER_PASS" | base64 -w0)
    mitmdump --listen-host 127.0.0.1 --listen-port "$MITM_PORT" --set confdir="$WORK/mitm" \
      --set ssl_verify_upstream_trusted_ca="$REG_CA" --set stream_large_bodies=1m \
      --set termlog_verbosity=warn --set flow_detail=0 \
      -s "$BENCH_DIR/mitm_inject.py" --set bench_host="$REG_HOST" --set "bench_auth=Basic $BASIC" \
      > "$WORK/mitm.log" 2>&1 &
    MITM_PID=$!; PIDS+=("$MITM_PID")
    wait_port "$MITM_PORT" "$MITM_PID" mitmdump
    MITM_CA=$WORK/mitm/mitmproxy-ca-cert.pem
    for _ in $(seq 100); do [ -s "$MITM_CA" ] && break; sleep 0.05; done
    lat_once mitm cold 1   # its first connection: mints a leaf (also checks that the path works)
    log "mitmdump peer on 127.0.0.1:$MITM_PORT (pid $MITM_PID)"
    ;;
  squid)
    SQUID_PORT=$(free_port)
    SD=$WORK/squid
    mkdir -p "$SD"
    # squid drops to user proxy: it gets its own directory, and the work directory becomes traversable
    # (0711, not listable; the proxy's and the CAs' keys stay in 0700 subdirectories)
    chmod 0711 "$WORK"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$SD/ca.key" -out "$SD/ca.crt" -days 30 \
      -subj '/CN=forward-bench squid CA' -addext 'basicConstraints=critical,CA:TRUE' \
      -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null || die "openssl (squid CA) failed"
    cat "$SD/ca.crt" "$SD/ca.key" > "$SD/ca.pem"; rm -f "$SD/ca.key"
    cp "$REG_CA" "$SD/registry-ca.crt"
    /usr/lib/squid/security_file_certgen -c -s "$SD/ssl_db" -M 4MB > /dev/null || die "security_file_certgen -c failed"
    BASIC=$(printf '%s:%s' "$USER_NAME" "$USER_PASS" | base64 -w0)
    cat > "$SD/squid.conf" <<EOF
http_port 127.0.0.1:$SQUID_PORT ssl-bump generate-host-certificates=on dynamic_cert_mem_cache_size=4MB tls-cert=$SD/ca.pem
sslcrtd_program /usr/lib/squid/security_file_certgen -s $SD/ssl_db -M 4MB
sslcrtd_children 2 startup=1 idle=1
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump bump all
tls_outgoing_options cafile=$SD/registry-ca.crt
acl to_lo dst 127.0.0.0/8 ::1
http_access deny !to_lo
http_access allow localhost
http_access deny all
dns_nameservers 127.0.0.1
hosts_file /etc/hosts
cache deny all
cache_mem 8 MB
read_ahead_gap ${SQUID_READ_AHEAD:-256 KB}
pid_filename $SD/squid.pid
access_log stdio:$SD/access.log
cache_log $SD/cache.log
coredump_dir $SD
shutdown_lifetime 1 seconds
cache_effective_user proxy
request_header_add Authorization "Basic $BASIC" to_lo
EOF
    chown -R proxy:proxy "$SD"
    chmod 0600 "$SD/ca.pem"
    squid -N -f "$SD/squid.conf" > "$WORK/squid.log" 2>&1 &
    SQUID_PID=$!; PIDS+=("$SQUID_PID")
    wait_port "$SQUID_PORT" "$SQUID_PID" squid
    SQUID_CA=$SD/ca.crt
    lat_once squid cold 1 || die "GET through squid failed (see $SD/cache.log)"
    log "squid ssl-bump peer on 127.0.0.1:$SQUID_PORT (pid $SQUID_PID)"
    ;;
  esac
done
KINDS=(direct proxy "${PEER_LIST[@]}")

# warm latency: LAT_N fresh connections per path, paths interleaved one connection at a time
log "latency: $LAT_N fresh connections per path (${KINDS[*]})"
for i in $(seq "$LAT_N"); do
  while read -r kind; do lat_once "$kind" warm "$i"; done < <(alternate "$i" "${KINDS[@]}")
done
FD_AFTER_LAT=$(ls "/proc/$PROXY_PID/fd" | wc -l)

# ---------------------------------------------------------------- correctness (untimed)
log "correctness: pull through every relay and hash"
CHECK=""
for kind in proxy "${PEER_LIST[@]}"; do
  pulled=$(set -o pipefail; curl_k "$kind" -sS --fail "$ORIGIN/v2/$NS/big/blobs/$DIGEST" | sha256sum | awk '{print "sha256:"$1}') \
    || die "pull through $kind failed"
  [ "$pulled" = "$DIGEST" ] || die "bytes pulled through $kind hash to $pulled, want $DIGEST"
  CHECK+="${CHECK:+; }$kind: sha256 of the pulled bytes = the blob's"
done
log "correctness OK"

# ---------------------------------------------------------------- throughput
RELAY_KINDS=(proxy mitm squid)
relay_ticks() {
  case "$1" in
    proxy) pid_ticks "$PROXY_PID" ;;
    mitm)  tree_ticks "${MITM_PID:-}" ;;
    squid) tree_ticks "${SQUID_PID:-}" ;;
  esac
}
RESULTS=$WORK/results.tsv
: > "$RESULTS"
record() {  # kind dir run bytes secs S0 S1
  local kind=$1 dir=$2 run=$3 bytes=$4 secs=$5 mibs reg relay client oth
  mibs=$(awk -v b="$bytes" -v t="$secs" 'BEGIN{printf "%.0f", b/1048576/t}')
  read -r reg relay client oth <<<"$(cpu_budget "$6" "$7" "$bytes" "$kind")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$dir" "$run" "$mibs" "$secs" "$bytes" \
    "$reg" "$relay" "$client" "$oth" >> "$RESULTS"
  log "$dir $kind run $run: $mibs MiB/s ($secs s; CPU s/GiB registry $reg relay $relay curl $client; other processes ${oth}% of the CPUs)"
}
pull_once() {  # kind run
  local kind=$1 run=$2 out code down secs S0 S1
  snap S0
  out=$(curl_k "$kind" -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total}' \
    "$ORIGIN/v2/$NS/big/blobs/$DIGEST") || die "$kind pull: curl failed"
  snap S1
  read -r code down secs <<<"$out"
  [ "$code" = 200 ] || die "$kind pull: GET → $code"
  [ "$down" = "$SIZE" ] || die "$kind pull: got $down of $SIZE bytes"
  record "$kind" pull "$run" "$down" "$secs" "$S0" "$S1"
}
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for kind in "${KINDS[@]}"; do   # warm-up (page cache, connection pools), untimed
  curl_k "$kind" -sS --fail -o /dev/null "$ORIGIN/v2/$NS/big/blobs/$DIGEST" || die "$kind warm-up pull failed"
done
for run in $(seq "$RUNS"); do
  while read -r kind; do pull_once "$kind" "$run"; done < <(alternate "$run" "${KINDS[@]}")
done
profile_proxy "forward-pull-$SIZE_MIB" curl_k proxy -sS -o /dev/null "$ORIGIN/v2/$NS/big/blobs/$DIGEST"

# ---------------------------------------------------------------- memory, leaks, log
kill -0 "$PROXY_PID" || die "the proxy died during the runs"
RSS_HWM_KB=$(proxy_status VmHWM)
RSS_END_KB=$(proxy_status VmRSS)
PROXY_THREADS=$(proxy_status Threads)
sleep 1
FD_END=$(ls "/proc/$PROXY_PID/fd" | wc -l)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
PROXY_WARNINGS=$(grep -ciE 'warn|error' "$WORK/proxy.log" || true)
peer_hwm() { awk '$1=="VmHWM:"{printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }
PEER_MEM=""
[ -n "${MITM_PID:-}" ] && PEER_MEM+="mitmdump VmHWM $(peer_hwm "$MITM_PID") MiB; "
[ -n "${SQUID_PID:-}" ] && PEER_MEM+="squid (main process) VmHWM $(peer_hwm "$SQUID_PID") MiB; "

# ---------------------------------------------------------------- report
lat_stat() {  # kind phase column(4 connect,5 appconnect,6 starttransfer,7 total) how(median|p99|max|n) → ms
  awk -F'\t' -v k="$1" -v p="$2" -v c="$3" '$1==k && $2==p {print $c*1000}' "$LAT" | sort -g |
    awk -v how="$4" '{a[NR]=$1} END{ if (NR==0) {print "-"; exit}
      if (how=="n") { print NR; exit }
      if (how=="max") { printf "%.1f\n", a[NR]; exit }
      if (how=="p99") { i=int(0.99*NR); if (i<0.99*NR) i++; printf "%.1f\n", a[i]; exit }
      if (NR%2) printf "%.1f\n", a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2 }'
}
diff_ms() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a=="-"||b=="-") print "-"; else printf "%+.1f", a-b }'; }
PULL_D=$(median direct pull); PULL_P=$(median proxy pull); PULL_RATIO=$(ratio "$PULL_P" "$PULL_D")
RSS_OK=$(awk -v k="$RSS_HWM_KB" 'BEGIN{ if (k/1024 < 100) print "met"; else print "**missed**" }')
LD=$(lat_stat direct warm 7 median); LP=$(lat_stat proxy warm 7 median)
LD99=$(lat_stat direct warm 7 p99); LP99=$(lat_stat proxy warm 7 p99)
LCOLD=$(lat_stat proxy cold 7 median); LSECOND=$(lat_stat proxy second 7 median)
machine_facts
mitm_ver=$(command -v mitmdump >/dev/null && mitmdump --version 2>/dev/null | awk '/^Mitmproxy:/{print $2}')
squid_ver=$(command -v squid >/dev/null && squid -v 2>/dev/null | awk 'NR==1{print $4}')
head_rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")

cat <<EOF
### Forward mode, $SIZE_MIB MiB blob pull over HTTPS, $RUNS runs per path; first-request latency over $LAT_N fresh connections per path ($(date -u '+%Y-%m-%d %H:%M UTC'))

| goal | measured | verdict |
| --- | --- | --- |
| intercepted pull ≥ 0.8 × direct HTTPS (HTTP/1.1) | $PULL_RATIO ($PULL_P vs $PULL_D MiB/s, medians) | $(verdict "$PULL_RATIO" 0.8) |
| proxy peak RSS < 100 MiB | VmHWM $(mib "$RSS_HWM_KB") MiB | $RSS_OK |
| first request on a fresh intercepted connection: added latency | median $(diff_ms "$LP" "$LD") ms ($LP vs $LD ms), p99 $(diff_ms "$LP99" "$LD99") ms ($LP99 vs $LD99 ms); cold (leaf minted, registry dialled) median $LCOLD ms | see below |

**Pull** (\`curl --http1.1 -o /dev/null GET …/blobs/<digest>\`, blob in the page cache):

| path | MiB/s (median) | ratio to direct | runs MiB/s | relay CPU s/GiB (median) | registry / curl CPU s/GiB (median) |
| --- | ---: | ---: | --- | ---: | --- |
EOF
for kind in "${KINDS[@]}"; do
  m=$(median "$kind" pull)
  printf '| %s | %s | %s | %s | %s | %s / %s |\n' "$(label_of "$kind")" "$m" "$(ratio "$m" "$PULL_D")" "$(runs_of "$kind" pull)" \
    "$(median "$kind" pull 8)" "$(median "$kind" pull 7)" "$(median "$kind" pull 9)"
done
cat <<EOF

**First request on a fresh connection** (one \`curl --http1.1\` per connection, \`GET /v2/$NS/small/manifests/v1\`, a $MANIFEST_SIZE-byte manifest;
the registry checks the bcrypt password on every request on every path; ms):

| path | n | connect (median) | TLS ready, \`time_appconnect\` (median) | \`time_total\` median | \`time_total\` p99 | max | added vs direct (median / p99) |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |
EOF
for kind in "${KINDS[@]}"; do
  printf '| %s | %s | %s | %s | %s | %s | %s | %s / %s |\n' "$kind" "$(lat_stat "$kind" warm 7 n)" "$(lat_stat "$kind" warm 4 median)" \
    "$(lat_stat "$kind" warm 5 median)" "$(lat_stat "$kind" warm 7 median)" "$(lat_stat "$kind" warm 7 p99)" "$(lat_stat "$kind" warm 7 max)" \
    "$(diff_ms "$(lat_stat "$kind" warm 7 median)" "$LD")" "$(diff_ms "$(lat_stat "$kind" warm 7 p99)" "$LD99")"
done
cat <<EOF

Cold proxy (a fresh process each time, $COLD_RUNS times): first connection (mints the leaf for $REG_HOST, dials and
handshakes with the registry) \`time_total\` median $LCOLD ms (runs $(awk -F'\t' '$1=="proxy" && $2=="cold"{printf "%s%.1f", s, $7*1000; s="/"}' "$LAT")),
\`time_appconnect\` median $(lat_stat proxy cold 5 median) ms; second connection on the same process median $LSECOND ms
(runs $(awk -F'\t' '$1=="proxy" && $2=="second"{printf "%s%.1f", s, $7*1000; s="/"}' "$LAT")).
$(for p in "${PEER_LIST[@]}"; do printf 'First connection through %s (its leaf minted): %s ms. ' "$p" "$(lat_stat "$p" cold 7 median)"; done)

Proxy process (\`--threads ${THREADS:-default}\`): RSS $(mib "$RSS_START_KB") MiB after start, peak (VmHWM) $(mib "$RSS_HWM_KB") MiB, $(mib "$RSS_END_KB") MiB at the end;
$PROXY_THREADS threads; open fds $FD_START at start, $FD_AFTER_LAT after the $((LAT_N)) latency connections, $FD_END at the end;
warn/error lines in its log: $PROXY_WARNINGS. ${PEER_MEM}
Without proxy credentials the proxy answers the CONNECT with $NO_AUTH_CODE. Certificate issuer seen by the client through the proxy: ${issuer:-?}.

Every pull run (CPU seconds per GiB moved, by process; "others" = share of all $NCPU CPUs that other processes on the machine took during the run):

| path | run | MiB/s | registry s/GiB | relay s/GiB | curl s/GiB | others % |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
EOF
awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $3, $4, $7, $8, $9, $10 }' "$RESULTS"
cat <<EOF

Correctness (untimed, once): $CHECK. The blob was pushed once directly (HTTPS, ${SEED_S} s).

Machine: $NCPU CPUs ($cpu_model), $mem_total RAM, $os, kernel $(uname -r); work dir on $fs_type;
load average $LOAD_START at the start of the pulls, $LOAD_END at the end.
Versions: docker-registry $reg_ver${reg_pkg:+ (Debian $reg_pkg)}, curl $curl_ver, $(openssl version | awk '{print $1" "$2}'), mitmproxy ${mitm_ver:-not used}, squid ${squid_ver:-not used}, $bin_ver (HEAD $head_rev, tree $git_rev).
Method: registry on 127.0.0.1 with TLS ($( [ "$REG_KEY" = ec ] && echo 'ECDSA P-256' || echo 'RSA-2048') server certificate from a private CA, SANs $REG_HOST/localhost/127.0.0.1) and
htpasswd (bcrypt); every client is \`curl --http1.1\` to https://$REG_HOST:$REG_PORT; direct = \`-u user:pass --cacert <registry CA>\`;
proxy = \`-x http://$NS%2F$CONN:<token>@<proxy> --cacert <proxy CA>\` (the client sends no registry credentials; the proxy has
\`--resolve $REG_HOST:$REG_PORT:127.0.0.1\` and the registry CA via \`caCertSecretRef\`); peers likewise with their own CAs.
Pull MiB/s = bytes / curl \`time_total\` after one untimed warm-up pull per path; paths alternate order run by run; MiB = 2^20 bytes.
EOF
