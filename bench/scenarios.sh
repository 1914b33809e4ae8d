#!/usr/bin/env bash
# The bench/run scenarios that blob.sh and forward.sh do not cover: chunked push, manifest HEAD/GET under
# load (real registry and a static fake upstream), new intercepted connections per second, 20 concurrent
# pulls with the proxy's peak RSS, and a multi-layer skopeo copy. Usually run by bench/run.
#
#   bench/scenarios.sh [--help]
#
# Progress on stderr; Markdown sections on stdout; raw tables (*.tsv) into EXPORT_DIR when set.
#
# Environment:
#   DUR=2s               duration of one load-generator run (scenarios 3 and 4)
#   REPS=2               interleaved repetitions per path (scenarios 3 and 4; median reported)
#   CHUNK_SIZE_MIB=1024  blob size of the chunked push (scenario 2), CHUNK_MIB=128 per PATCH, PUSH_RUNS=3
#   PAR=20 PAR_MIB=256 PAR_RUNS=3   concurrent pulls (scenario 5)
#   LAYERS=8 LAYER_MIB=37 SKOPEO_RUNS=3   the skopeo image (scenario 6)
#   PERF=1               also record a perf profile of the proxy (scenario 3 HEAD c=100 against the fake;
#                        scenario 5) into EXPORT_DIR/perf-*.txt
#   LOADGEN_BIN=...      the load generator (default: $CARGO_TARGET_DIR/release/connectors-loadgen)
#   CONNECTORS_BIN, NO_BUILD, NO_INSTALL, KEEP, BENCH_TMPDIR, THREADS: as in blob.sh
set -euo pipefail

case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; "") ;; *) echo "unknown argument $1" >&2; exit 2 ;; esac

DUR=${DUR:-2s}
REPS=${REPS:-2}
CHUNK_SIZE_MIB=${CHUNK_SIZE_MIB:-1024}
CHUNK_MIB=${CHUNK_MIB:-128}
PUSH_RUNS=${PUSH_RUNS:-3}
PAR=${PAR:-20}
PAR_MIB=${PAR_MIB:-256}
PAR_RUNS=${PAR_RUNS:-3}
LAYERS=${LAYERS:-8}
LAYER_MIB=${LAYER_MIB:-37}
SKOPEO_RUNS=${SKOPEO_RUNS:-3}
PERF=${PERF:-0}
SCRIPT_NAME=scenarios.sh
TOKEN=""
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BIG_PATHS=(chunked.bin par.bin chunks registry/data oci pulls)
EXPORT_DIR=${EXPORT_DIR:-}

for c in docker-registry htpasswd curl nginx openssl skopeo python3; do
  command -v "$c" >/dev/null || die "$c is missing (bench/run installs it)"
done
build_proxy
LOADGEN=${LOADGEN_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/connectors-loadgen}
[ -x "$LOADGEN" ] || die "no load generator at $LOADGEN (cargo build --release -p connectors-loadgen)"
need=$(( (CHUNK_SIZE_MIB * 3 + PAR_MIB * 2 + LAYERS * LAYER_MIB * 4) * 1024 + 262144 ))
make_workdir connectors-scenarios "$need"

# ---------------------------------------------------------------- registry, certificates, nginx
start_registry
REG=http://127.0.0.1:$REG_PORT
wait_http "$REG/v2/" "$REG_PID" registry
log "registry on $REG"

FAKE_HOST=fake.test
CERTS=$WORK/certs; mkdir -m 0700 "$CERTS"
(
  cd "$CERTS"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 7 \
    -subj '/CN=bench fake CA' -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign' 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr -subj "/CN=$FAKE_HOST" 2>/dev/null
  printf 'subjectAltName=DNS:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' "$FAKE_HOST" > srv.ext
  openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 7 -extfile srv.ext 2>/dev/null
) || die "openssl failed"

# the small image (config + one 4 KiB layer) for the manifest scenarios, pushed directly
put_blob() {  # FILE REPO → monolithic push to the registry directly
  local loc d
  d=sha256:$(sha256sum "$1" | awk '{print $1}')
  loc=$(curl -sS --fail -u "$USER_NAME:$USER_PASS" -D - -o /dev/null -X POST "$REG/v2/$2/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  case "$loc" in /*) loc=$REG$loc ;; esac
  case "$loc" in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
  curl -sS --fail -u "$USER_NAME:$USER_PASS" -H 'Expect:' -H 'Content-Type: application/octet-stream' -T "$1" "$loc" -o /dev/null \
    || die "push of $1 failed"
  echo "$d"
}
mkdir -p "$WORK/small"
head -c 4096 /dev/urandom > "$WORK/small/layer"
echo '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > "$WORK/small/config"
LD=$(put_blob "$WORK/small/layer" bench/small); CD=$(put_blob "$WORK/small/config" bench/small)
MT=application/vnd.oci.image.manifest.v1+json
printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":4096}]}' \
  "$MT" "$CD" "$(stat -c %s "$WORK/small/config")" "$LD" > "$WORK/small/manifest"
code=$(curl -sS -o /dev/null -w '%{http_code}' -u "$USER_NAME:$USER_PASS" -X PUT -H "Content-Type: $MT" \
  --data-binary @"$WORK/small/manifest" "$REG/v2/bench/small/manifests/v1")
[ "$code" = 201 ] || die "manifest PUT → $code"
MPATH=bench/small/manifests/v1

# nginx: reverse peer → registry, static fake (http and https), reverse peer → static fake
ND=$WORK/nginx; mkdir -p "$ND/tmp" "$ND/fake/v2/bench/small/manifests"
cp "$WORK/small/manifest" "$ND/fake/v2/bench/small/manifests/v1"
NGX_PORT=$(free_port); FAKE_PORT=$(free_port); FAKES_PORT=$(free_port); NGXF_PORT=$(free_port)
BASIC=$(printf '%s:%s' "$USER_NAME" "$USER_PASS" | base64 -w0)
user_line=""; [ "$(id -u)" = 0 ] && user_line="user root;"
relay_server() {  # PORT UPSTREAM
  cat <<EOF
  server {
    listen 127.0.0.1:$1;
    client_max_body_size 0;
    client_body_buffer_size 256k;
    location = /v2/ { return 200 '{}'; }
    location ~ ^/v2/namespaces/(?<ns>[^/]+)/connectors/(?<conn>[^/]+)/(?<rest>.+)\$ {
      proxy_pass http://$2/v2/\$rest\$is_args\$args;
      proxy_redirect ~^(?:https?://[^/]+)?/v2/(?<loc>.*)\$ /v2/namespaces/\$ns/connectors/\$conn/\$loc;
      proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header Authorization "Basic $BASIC";
      proxy_buffering off; proxy_request_buffering off;
      proxy_buffer_size 256k; proxy_buffers 4 256k; proxy_busy_buffers_size 256k;
      proxy_read_timeout 900s; proxy_send_timeout 900s;
    }
  }
EOF
}
cat > "$ND/nginx.conf" <<EOF
daemon off;
$user_line
worker_processes 1;
pid $ND/nginx.pid;
error_log $ND/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $ND/tmp/body; proxy_temp_path $ND/tmp/proxy;
  fastcgi_temp_path $ND/tmp/fcgi; uwsgi_temp_path $ND/tmp/uwsgi; scgi_temp_path $ND/tmp/scgi;
  keepalive_requests 1000000;
  upstream registry { server 127.0.0.1:$REG_PORT; keepalive 64; }
  upstream fake { server 127.0.0.1:$FAKE_PORT; keepalive 64; }
  # the static fake registry: answers every manifest HEAD/GET from a file, no auth, no registry work
  server {
    listen 127.0.0.1:$FAKE_PORT;
    listen 127.0.0.1:$FAKES_PORT ssl;
    ssl_certificate $CERTS/srv.crt; ssl_certificate_key $CERTS/srv.key;
    root $ND/fake;
    location = /v2/ { return 200 '{}'; }
    location /v2/ { default_type $MT; }
  }
$(relay_server "$NGX_PORT" registry)
$(relay_server "$NGXF_PORT" fake)
}
EOF
nginx -p "$ND" -e "$ND/error.log" -c "$ND/nginx.conf" > "$WORK/nginx.out" 2>&1 &
NGX_PID=$!; PIDS+=("$NGX_PID")
wait_http "http://127.0.0.1:$FAKE_PORT/v2/" "$NGX_PID" nginx
log "nginx: peer :$NGX_PORT, fake :$FAKE_PORT (https :$FAKES_PORT), peer→fake :$NGXF_PORT"

# ---------------------------------------------------------------- the proxy: three connectors
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
metadata: {name: fake-ca, namespace: $NS}
type: Opaque
stringData:
  ca.crt: |
EOF
  sed 's/^/    /' "$CERTS/ca.crt"
  for c in "reg http://127.0.0.1:$REG_PORT" "fake http://127.0.0.1:$FAKE_PORT" "tls https://$FAKE_HOST:$FAKES_PORT"; do
    set -- $c
    cat <<EOF
---
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {name: $1, namespace: $NS}
spec:
  connectorClassName: oci
  address: $2
  auth: {name: tokenAuth, secretRef: {name: reg-auth}}
EOF
    [ "$1" = tls ] && echo "  caCertSecretRef: {name: fake-ca}"
  done
} > "$WORK/proxy/catalog.yaml"
start_proxy "$WORK/proxy/catalog.yaml" --resolve "$FAKE_HOST:$FAKES_PORT:127.0.0.1" ${THREADS:+--threads "$THREADS"}
TOKEN=$("$BIN" token issue --state-dir "$WORK/proxy/state" --connectors "$NS/reg,$NS/fake,$NS/tls" --ttl 2h --subject scenarios)
PROXY=http://$PROXY_ADDR
PROXY_CA=$WORK/proxy/state/ca.crt
PFX=namespaces/$NS/connectors
log "proxy on $PROXY (pid $PROXY_PID)"
TOK_BASIC="Basic $(printf 'x:%s' "$TOKEN" | base64 -w0)"

mtime() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(mtime)" 'BEGIN{printf "%.3f", b-a}'; }
med() { sort -g | awk '{a[NR]=$1} END{ if (NR==0) {print "-"; exit} if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
rat() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0==0 || a=="-") print "-"; else printf "%.2f", a/b }'; }
export_file() { [ -n "$EXPORT_DIR" ] && cp "$1" "$EXPORT_DIR/" || true; }

# perf_during SECONDS NAME: profile the proxy in the background (PERF=1)
perf_during() {
  [ "$PERF" = 1 ] && [ -n "$EXPORT_DIR" ] && command -v perf >/dev/null || return 0
  perf record -q -e cpu-clock -F 499 -a -g -o "$WORK/perf-$2.data" -- sleep "$1" >/dev/null 2>&1 &
  PERF_PID=$!
}
perf_report() {  # NAME
  [ -n "${PERF_PID:-}" ] || return 0
  wait "$PERF_PID" 2>/dev/null || true; PERF_PID=""
  perf report -q -i "$WORK/perf-$1.data" --no-children --pid "$PROXY_PID" --percentage relative --sort symbol --stdio -g none --percent-limit 0.7 2>/dev/null \
    | grep -v '^$' | head -40 > "$EXPORT_DIR/perf-$1.txt" || true
  perf report -q -i "$WORK/perf-$1.data" --no-children --pid "$PROXY_PID" --percentage relative --sort dso --stdio -g none 2>/dev/null | grep -v '^$' | head -12 \
    > "$EXPORT_DIR/perf-$1-dso.txt" || true
  rm -f "$WORK/perf-$1.data"
}

# ================================================================ scenario 5: 20 concurrent pulls (first: the
# proxy is fresh, so VmHWM afterwards is this scenario's peak)
log "scenario 5: $PAR concurrent $PAR_MIB MiB pulls × $PAR_RUNS (direct, proxy, nginx)"
head -c $((PAR_MIB * 1048576)) /dev/urandom > "$WORK/par.bin"
PD=$(put_blob "$WORK/par.bin" bench/par)
RSS0=$(proxy_status VmRSS)
url_of() {  # KIND REPO-PATH → URL and auth (direct, proxy, nginx; *-fake for the static fake)
  case "$1" in
    direct) echo "$REG/v2/$2" ;;
    proxy) echo "$PROXY/v2/$PFX/reg/$2" ;;
    nginx) echo "http://127.0.0.1:$NGX_PORT/v2/$PFX/reg/$2" ;;
    direct-fake) echo "http://127.0.0.1:$FAKE_PORT/v2/$2" ;;
    proxy-fake) echo "$PROXY/v2/$PFX/fake/$2" ;;
    nginx-fake) echo "http://127.0.0.1:$NGXF_PORT/v2/$PFX/fake/$2" ;;
  esac
}
auth_hdr() {
  case "$1" in
    direct*) echo "Authorization: Basic $BASIC" ;;
    proxy*) echo "Authorization: $TOK_BASIC" ;;
    *) echo "X-No-Auth: 1" ;;
  esac
}
PART=$WORK/parallel.tsv; : > "$PART"   # kind run seconds aggregate_MiB/s errors
for run in $(seq "$PAR_RUNS"); do
  for k in $(alternate "$run" direct proxy nginx); do
    [ "$k" = proxy ] && [ "$run" = 1 ] && perf_during 3 parallel
    t0=$(mtime); cpids=()
    for i in $(seq "$PAR"); do
      curl -sS --http1.1 -H "$(auth_hdr "$k")" -o /dev/null -w '%{http_code} %{size_download}\n' \
        "$(url_of "$k" "bench/par/blobs/$PD")" > "$WORK/pr.$i" 2>&1 &
      cpids+=($!)
    done
    for p in "${cpids[@]}"; do wait "$p" || true; done
    secs=$(elapsed "$t0")
    [ "$k" = proxy ] && [ "$run" = 1 ] && perf_report parallel
    bad=$(cat "$WORK"/pr.* | awk -v s=$((PAR_MIB * 1048576)) '$1!=200 || $2!=s' | wc -l)
    agg=$(awk -v n="$PAR" -v m="$PAR_MIB" -v t="$secs" 'BEGIN{printf "%.0f", n*m/t}')
    printf '%s\t%s\t%s\t%s\t%s\n' "$k" "$run" "$secs" "$agg" "$bad" >> "$PART"
    log "  $k run $run: $agg MiB/s aggregate ($secs s, $bad failed)"
  done
done
HWM5=$(proxy_status VmHWM)
export_file "$PART"

# ================================================================ scenario 3: manifest HEAD/GET under load
log "scenario 3: manifest HEAD/GET at c=50/100, $DUR × $REPS per path"
MAN=$WORK/manifest.tsv; : > "$MAN"   # target method c rep kind rps p50 p99 p999 errors requests
lg() {  # KIND METHOD C → JSON
  local k=$1 m=$2 c=$3
  case "$k" in
    forward-fake) "$LOADGEN" -m "$m" -c "$c" -d "$DUR" -H "Accept: $MT" --cacert "$PROXY_CA" \
                    -x "http://$NS%2Ftls:$TOKEN@$PROXY_ADDR" "https://$FAKE_HOST:$FAKES_PORT/v2/$MPATH" ;;
    direct-tls-fake) "$LOADGEN" -m "$m" -c "$c" -d "$DUR" -H "Accept: $MT" --cacert "$CERTS/ca.crt" \
                    --connect-to "127.0.0.1:$FAKES_PORT" "https://$FAKE_HOST:$FAKES_PORT/v2/$MPATH" ;;
    *) "$LOADGEN" -m "$m" -c "$c" -d "$DUR" -H "Accept: $MT" -H "$(auth_hdr "$k")" "$(url_of "$k" "$MPATH")" ;;
  esac
}
jf() { python3 -c 'import json,sys; d=json.load(sys.stdin); l=d["latency_ms"]; print(d["rps"], l["p50"], l["p99"], l["p999"], d["errors"], d["requests"])'; }
for target in registry fake; do
  if [ "$target" = registry ]; then kinds=(direct proxy nginx); else kinds=(direct-fake proxy-fake nginx-fake direct-tls-fake forward-fake); fi
  for m in HEAD GET; do
    for c in 50 100; do
      for rep in $(seq "$REPS"); do
        for k in $(alternate "$rep" "${kinds[@]}"); do
          out=$(lg "$k" "$m" "$c" | jf) || die "loadgen $k $m c=$c failed"
          printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$m" "$c" "$rep" "$k" "$(tr ' ' '\t' <<<"$out")" >> "$MAN"
          log "  $target $m c=$c $k: $out (rps p50 p99 p99.9 errors requests)"
        done
      done
    done
  done
done
if [ "$PERF" = 1 ]; then
  log "  profiling the proxy: HEAD c=100 against the fake (not a measured run)"
  perf_during 3 manifest; lg proxy-fake HEAD 100 > /dev/null; perf_report manifest
fi
export_file "$MAN"

# ================================================================ scenario 4: new intercepted connections per second
log "scenario 4: a new connection per request (c=8), $DUR × $REPS: direct TLS vs forward (intercepted)"
CONN4=$WORK/newconn.tsv; : > "$CONN4"   # kind rep conns/s p50 p99 p999 errors
for rep in $(seq "$REPS"); do
  for k in $(alternate "$rep" direct-tls-fake forward-fake); do
    case "$k" in
      forward-fake) out=$("$LOADGEN" --new-conn -c 8 -d "$DUR" --cacert "$PROXY_CA" -x "http://$NS%2Ftls:$TOKEN@$PROXY_ADDR" \
                       -H "Accept: $MT" "https://$FAKE_HOST:$FAKES_PORT/v2/$MPATH" | jf) ;;
      *) out=$("$LOADGEN" --new-conn -c 8 -d "$DUR" --cacert "$CERTS/ca.crt" --connect-to "127.0.0.1:$FAKES_PORT" \
                       -H "Accept: $MT" "https://$FAKE_HOST:$FAKES_PORT/v2/$MPATH" | jf) ;;
    esac
    printf '%s\t%s\t%s\n' "$k" "$rep" "$(tr ' ' '\t' <<<"$out")" >> "$CONN4"
    log "  $k rep $rep: $out"
  done
done
export_file "$CONN4"

# ================================================================ scenario 2: chunked push
log "scenario 2: chunked push of $CHUNK_SIZE_MIB MiB in $CHUNK_MIB MiB PATCHes × $PUSH_RUNS (direct, proxy, nginx)"
head -c $((CHUNK_SIZE_MIB * 1048576)) /dev/urandom > "$WORK/chunked.bin"
CHD=sha256:$(sha256sum "$WORK/chunked.bin" | awk '{print $1}')
mkdir -p "$WORK/chunks"; (cd "$WORK/chunks" && split -b "${CHUNK_MIB}M" -d -a 3 ../chunked.bin c.)
origin_of() { case "$1" in direct) echo "$REG" ;; proxy) echo "$PROXY" ;; nginx) echo "http://127.0.0.1:$NGX_PORT" ;; esac; }
abs_loc() {  # KIND HEADERS-FILE → absolute Location
  local l; l=$(tr -d '\r' < "$2" | awk 'tolower($1)=="location:"{print $2}' | tail -1)
  [ -n "$l" ] || die "$1 chunked push: no Location"
  case "$l" in /*) echo "$(origin_of "$1")$l" ;; *) echo "$l" ;; esac
}
CHK=$WORK/chunked.tsv; : > "$CHK"   # kind run seconds MiB/s
for run in $(seq "$PUSH_RUNS"); do
  for k in $(alternate "$run" direct proxy nginx); do
    rm -rf "$WORK/registry/data/docker/registry/v2/blobs" "$WORK/registry/data/docker/registry/v2/repositories"
    h=$(auth_hdr "$k")
    t0=$(mtime)
    curl -sS --http1.1 -H "$h" -D "$WORK/h" -o /dev/null -X POST "$(url_of "$k" bench/chunked/blobs/uploads/)"
    loc=$(abs_loc "$k" "$WORK/h"); off=0
    for f in "$WORK"/chunks/c.*; do
      sz=$(stat -c %s "$f")
      code=$(curl -sS --http1.1 -H "$h" -H 'Expect:' -H 'Content-Type: application/octet-stream' \
        -H "Content-Range: $off-$((off + sz - 1))" -D "$WORK/h" -o /dev/null -w '%{http_code}' -X PATCH --data-binary @"$f" "$loc")
      [ "$code" = 202 ] || die "$k PATCH → $code"
      loc=$(abs_loc "$k" "$WORK/h"); off=$((off + sz))
    done
    case "$loc" in *\?*) loc="$loc&digest=$CHD" ;; *) loc="$loc?digest=$CHD" ;; esac
    code=$(curl -sS --http1.1 -H "$h" -o /dev/null -w '%{http_code}' -X PUT "$loc")
    [ "$code" = 201 ] || die "$k final PUT → $code"
    secs=$(elapsed "$t0")
    mibs=$(awk -v m="$CHUNK_SIZE_MIB" -v t="$secs" 'BEGIN{printf "%.0f", m/t}')
    printf '%s\t%s\t%s\t%s\n' "$k" "$run" "$secs" "$mibs" >> "$CHK"
    log "  $k run $run: $mibs MiB/s ($secs s)"
  done
done
export_file "$CHK"
rm -rf "$WORK/chunks" "$WORK/chunked.bin"

# ================================================================ scenario 6: skopeo copy of a multi-layer image
log "scenario 6: skopeo copy of a $LAYERS-layer image ($((LAYERS * LAYER_MIB)) MiB) × $SKOPEO_RUNS, push and pull"
python3 - "$WORK/oci" "$LAYERS" "$LAYER_MIB" <<'EOF'
import hashlib, json, os, sys
root, n, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(f"{root}/blobs/sha256")
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(f"{root}/blobs/sha256/{d}", "wb").write(data)
    return {"digest": f"sha256:{d}", "size": len(data)}
# random bytes labelled gzip: the registry and skopeo only check digests, and skopeo does not recompress them
layers = [dict(mediaType="application/vnd.oci.image.layer.v1.tar+gzip", **blob(os.urandom(mib << 20))) for _ in range(n)]
cfg = blob(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}).encode())
man = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **cfg), "layers": layers}).encode())
json.dump({"schemaVersion": 2, "manifests": [dict(mediaType="application/vnd.oci.image.manifest.v1+json",
    annotations={"org.opencontainers.image.ref.name": "v1"}, **man)]}, open(f"{root}/index.json", "w"))
open(f"{root}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
EOF
skopeo_iso() {  # skopeo with a private blob-info cache (G3)
  unshare -m sh -c 'mount -t tmpfs tmpfs /var/lib/containers/cache 2>/dev/null || { mkdir -p /var/lib/containers/cache && mount -t tmpfs tmpfs /var/lib/containers/cache; }; exec skopeo "$@"' skopeo "$@"
}
mkdir -p /var/lib/containers/cache
ref_of() {
  case "$1" in
    direct) echo "docker://127.0.0.1:$REG_PORT/bench/img:v1" ;;
    proxy) echo "docker://$PROXY_ADDR/$PFX/reg/bench/img:v1" ;;
    nginx) echo "docker://127.0.0.1:$NGX_PORT/$PFX/reg/bench/img:v1" ;;
  esac
}
creds_of() {  # KIND src|dest
  case "$1" in
    direct) echo "--$2-creds=$USER_NAME:$USER_PASS" ;;
    proxy) echo "--$2-creds=x:$TOKEN" ;;
    nginx) echo "--$2-no-creds" ;;
  esac
}
SKO=$WORK/skopeo.tsv; : > "$SKO"   # kind dir run seconds MiB/s
IMG_MIB=$((LAYERS * LAYER_MIB))
for run in $(seq "$SKOPEO_RUNS"); do
  for k in $(alternate "$run" direct proxy nginx); do
    rm -rf "$WORK/registry/data/docker/registry/v2/blobs" "$WORK/registry/data/docker/registry/v2/repositories"
    t0=$(mtime)
    skopeo_iso copy -q --dest-tls-verify=false "$(creds_of "$k" dest)" "oci:$WORK/oci:v1" "$(ref_of "$k")" > "$WORK/skopeo.log" 2>&1 \
      || { cat "$WORK/skopeo.log" >&2; die "skopeo push via $k failed"; }
    secs=$(elapsed "$t0")
    printf '%s\tpush\t%s\t%s\t%s\n' "$k" "$run" "$secs" "$(awk -v m=$IMG_MIB -v t="$secs" 'BEGIN{printf "%.0f", m/t}')" >> "$SKO"
    rm -rf "$WORK/pulls"
    t0=$(mtime)
    skopeo_iso copy -q --src-tls-verify=false "$(creds_of "$k" src)" "$(ref_of "$k")" "dir:$WORK/pulls" > "$WORK/skopeo.log" 2>&1 \
      || { cat "$WORK/skopeo.log" >&2; die "skopeo pull via $k failed"; }
    secs=$(elapsed "$t0")
    printf '%s\tpull\t%s\t%s\t%s\n' "$k" "$run" "$secs" "$(awk -v m=$IMG_MIB -v t="$secs" 'BEGIN{printf "%.0f", m/t}')" >> "$SKO"
    log "  $k run $run: push $(awk -F'\t' -v k="$k" -v r="$run" '$1==k&&$3==r&&$2=="push"{print $4}' "$SKO") s, pull $secs s"
  done
done
export_file "$SKO"
HWM_END=$(proxy_status VmHWM)

# ================================================================ report (Markdown sections)
col_med() { awk -F'\t' "$1" "$2" | med; }
echo "### Scenario 5: $PAR concurrent pulls of a $PAR_MIB MiB blob (HTTP/1.1, $PAR_RUNS runs per path)"
echo
echo "| path | aggregate MiB/s (median) | ratio to direct | runs | failed transfers |"
echo "| --- | --- | --- | --- | --- |"
D5=$(col_med '$1=="direct"{print $4}' "$PART")
for k in direct proxy nginx; do
  m=$(col_med "\$1==\"$k\"{print \$4}" "$PART")
  echo "| $k | $m | $(rat "$m" "$D5") | $(awk -F'\t' -v k=$k '$1==k{printf "%s%s", s, $4; s="/"}' "$PART") | $(awk -F'\t' -v k=$k '$1==k{n+=$5} END{print n+0}' "$PART") |"
done
echo
echo "Proxy RSS: $(mib "$RSS0") MiB before, **peak (VmHWM) $(mib "$HWM5") MiB** after scenario 5 (the process was fresh; setup went direct)."
echo
echo "### Scenario 3: manifest HEAD/GET, connectors-loadgen (keep-alive, HTTP/1.1), $DUR per run, $REPS runs per path, medians"
echo
echo "| upstream | method | c | path | req/s | p50 ms | p99 ms | p99.9 ms | added p50 ms | added p99 ms | req/s ratio | errors |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for target in registry fake; do
  for m in HEAD GET; do
    for c in 50 100; do
      for k in $(awk -F'\t' -v t=$target '$1==t{print $5}' "$MAN" | awk '!s[$0]++'); do
        base=direct; [ "$target" = fake ] && base=direct-fake
        [ "$k" = forward-fake ] && base=direct-tls-fake
        sel="\$1==\"$target\" && \$2==\"$m\" && \$3==$c && \$5==\"$k\""
        bsel="\$1==\"$target\" && \$2==\"$m\" && \$3==$c && \$5==\"$base\""
        rps=$(col_med "$sel{print \$6}" "$MAN"); p50=$(col_med "$sel{print \$7}" "$MAN"); p99=$(col_med "$sel{print \$8}" "$MAN")
        p999=$(col_med "$sel{print \$9}" "$MAN"); err=$(awk -F'\t' "$sel{n+=\$10} END{print n+0}" "$MAN")
        b50=$(col_med "$bsel{print \$7}" "$MAN"); b99=$(col_med "$bsel{print \$8}" "$MAN"); brps=$(col_med "$bsel{print \$6}" "$MAN")
        if [ "$k" = "$base" ]; then a50="—"; a99="—"; else
          a50=$(awk -v a="$p50" -v b="$b50" 'BEGIN{printf "%+.3f", a-b}'); a99=$(awk -v a="$p99" -v b="$b99" 'BEGIN{printf "%+.3f", a-b}'); fi
        echo "| $target | $m | $c | $k | $rps | $p50 | $p99 | $p999 | $a50 | $a99 | $(rat "$rps" "$brps") | $err |"
      done
    done
  done
done
echo
echo "Paths: \`direct\` = loadgen → registry (Basic); \`proxy\` = loadgen → Connectors reverse proxy (token) → upstream;"
echo "\`nginx\` = loadgen → nginx (Basic injected) → upstream; \`*-fake\` = the same against nginx serving the manifest"
echo "from a file (no registry work); \`direct-tls-fake\` = HTTPS straight to the fake; \`forward-fake\` = CONNECT through the"
echo "proxy, TLS intercepted, HTTPS to the fake (compared with \`direct-tls-fake\`). The load generator, the relay and the"
echo "upstream share the 2 CPUs, so req/s of a relay path is bounded by what is left to the upstream."
echo
echo "### Scenario 4: a new connection for every request (c=8, $DUR × $REPS)"
echo
echo "| path | connections (= requests)/s | p50 ms | p99 ms | p99.9 ms | ratio to direct | errors |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
D4=$(col_med '$1=="direct-tls-fake"{print $3}' "$CONN4")
for k in direct-tls-fake forward-fake; do
  sel="\$1==\"$k\""
  r=$(col_med "$sel{print \$3}" "$CONN4")
  echo "| $k | $r | $(col_med "$sel{print \$4}" "$CONN4") | $(col_med "$sel{print \$5}" "$CONN4") | $(col_med "$sel{print \$6}" "$CONN4") | $(rat "$r" "$D4") | $(awk -F'\t' "$sel{n+=\$7} END{print n+0}" "$CONN4") |"
done
echo
echo "Each request: TCP connect, (forward: \`CONNECT\` + proxy token check), TLS handshake (forward: with the proxy's leaf"
echo "for $FAKE_HOST, its certificate cache warm), one manifest GET, close. The cold-cache figure is in the forward section."
echo
echo "### Scenario 2: chunked push of $CHUNK_SIZE_MIB MiB ($CHUNK_MIB MiB PATCHes + final PUT), $PUSH_RUNS runs per path"
echo
echo "| path | MiB/s (median) | ratio to direct | runs |"
echo "| --- | --- | --- | --- |"
D2=$(col_med '$1=="direct"{print $4}' "$CHK")
for k in direct proxy nginx; do
  m=$(col_med "\$1==\"$k\"{print \$4}" "$CHK")
  echo "| $k | $m | $(rat "$m" "$D2") | $(awk -F'\t' -v k=$k '$1==k{printf "%s%s", s, $4; s="/"}' "$CHK") |"
done
echo
echo "### Scenario 6: skopeo copy of a $LAYERS-layer image ($IMG_MIB MiB), oci: → registry and registry → dir:, $SKOPEO_RUNS runs"
echo
echo "| path | push s (median) | push ratio (time direct / time path) | pull s (median) | pull ratio |"
echo "| --- | --- | --- | --- | --- |"
DP=$(col_med '$1=="direct" && $2=="push"{print $4}' "$SKO"); DL=$(col_med '$1=="direct" && $2=="pull"{print $4}' "$SKO")
for k in direct proxy nginx; do
  p=$(col_med "\$1==\"$k\" && \$2==\"push\"{print \$4}" "$SKO"); l=$(col_med "\$1==\"$k\" && \$2==\"pull\"{print \$4}" "$SKO")
  echo "| $k | $p | $(rat "$DP" "$p") | $l | $(rat "$DL" "$l") |"
done
echo
echo "skopeo $(skopeo --version | awk '{print $3}'), each copy in its own mount namespace with a tmpfs blob-info cache"
echo "(TESTGROUND G3), registry storage emptied before every push. Proxy VmHWM at the end of all scenarios: $(mib "$HWM_END") MiB."
[ -n "$EXPORT_DIR" ] && printf '%s\n' "$HWM5" > "$EXPORT_DIR/hwm5.kb"
log "done"
