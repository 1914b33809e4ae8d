#!/usr/bin/env bash
# Blob push/pull throughput: registry direct vs through the Connectors proxy (and an nginx peer).
#
#   bench/blob.sh [--markdown] [--help]
#
# Everything runs on 127.0.0.1, in a fresh mktemp directory, and every process the script starts is
# killed by PID on exit. Progress goes to stderr; the Markdown report (paste into bench/RESULTS.md)
# goes to stdout. See bench/README.md.
#
# Environment:
#   SIZE_MIB=1024        size of the random blob
#   RUNS=3               timed runs per path and direction (median reported)
#   PULL_RUNS=$RUNS      timed pull runs per path (pulls are short, more runs are cheap)
#   NGINX=auto           auto|1|0: nginx reverse-proxy peer (auto = if nginx is present or installable)
#   CONNECTORS_BIN=...   use this proxy binary instead of `cargo build --release -p connectors`
#   NO_BUILD=1           do not run cargo; use $CARGO_TARGET_DIR/release/connectors (or target/…) as is
#   NO_INSTALL=1         never call apt-get (fail / skip nginx if something is missing)
#   KEEP=1               keep the work directory (logs, configs) and print its path
#   BENCH_TMPDIR=DIR     where to create the work directory (default $TMPDIR or /tmp); needs ~3×SIZE_MIB free
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
for arg in "$@"; do
  case "$arg" in
    --markdown) ;;               # the default output; accepted for clarity
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
PULL_RUNS=${PULL_RUNS:-$RUNS}
NGINX=${NGINX:-auto}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '[blob.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- processes and cleanup
PIDS=()
WORK=""
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "${KEEP:-}" = 1 ] || [ $rc -ne 0 ]; then
      log "work directory kept: $WORK"
      # the random blob and the registry data are large; logs and configs are what matter
      rm -f "$WORK/blob.bin"; rm -rf "$WORK/registry/data"
    else
      rm -rf "$WORK"
    fi
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- packages
need_install=()
command -v docker-registry >/dev/null || need_install+=(docker-registry)
command -v htpasswd >/dev/null || need_install+=(apache2-utils)
command -v curl >/dev/null || need_install+=(curl)
want_nginx=0
case "$NGINX" in
  0|no|off) ;;
  1|yes|on) want_nginx=1; command -v nginx >/dev/null || need_install+=(nginx-light) ;;
  auto)
    if command -v nginx >/dev/null; then want_nginx=1
    elif [ "${NO_INSTALL:-}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      want_nginx=1; need_install+=(nginx-light)
    else log "nginx not available: skipping the nginx peer (NGINX=1 to insist)"; fi ;;
  *) die "NGINX must be auto, 1 or 0" ;;
esac
if [ ${#need_install[@]} -gt 0 ]; then
  [ "${NO_INSTALL:-}" = 1 ] && die "missing packages: ${need_install[*]} (NO_INSTALL=1)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  log "installing ${need_install[*]}"
  $SUDO apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_install[@]}" >&2 \
    || die "apt-get install ${need_install[*]} failed"
fi
command -v sha256sum >/dev/null || die "sha256sum (coreutils) is required"

# ---------------------------------------------------------------- proxy binary
if [ -n "${CONNECTORS_BIN:-}" ]; then
  BIN=$CONNECTORS_BIN
else
  TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
  case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$REPO_ROOT/$TARGET_DIR ;; esac
  BIN=$TARGET_DIR/release/connectors
  if [ "${NO_BUILD:-}" != 1 ]; then
    log "cargo build --release -p connectors (a no-op when up to date)"
    (cd "$REPO_ROOT" && cargo build --release -p connectors >&2) || die "release build failed (set CONNECTORS_BIN or NO_BUILD=1)"
  fi
fi
[ -x "$BIN" ] || die "no proxy binary at $BIN"

# ---------------------------------------------------------------- work directory, ports
# mode 0700 (mktemp): the proxy's token signing key lives in here
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/connectors-blob-bench.XXXXXX")
log "work directory $WORK"
need_kib=$(( SIZE_MIB * 1024 * 3 + 262144 ))
avail_kib=$(df -Pk "$WORK" | awk 'NR==2{print $4}')
[ "$avail_kib" -ge "$need_kib" ] || die "not enough space in $WORK: need $((need_kib/1024)) MiB, have $((avail_kib/1024)) MiB"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {  # a random port nobody listens on (each server is up before the next port is picked)
  local p
  for _ in $(seq 200); do
    p=$(( 20000 + RANDOM % 40000 ))
    if ! port_in_use "$p"; then echo "$p"; return 0; fi
  done
  die "no free port found"
}
wait_http() {  # url pid name: until any HTTP answer
  local url=$1 pid=$2 name=$3
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || die "$name exited during startup (see $WORK/*.log)"
    if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
    sleep 0.05
  done
  die "$name did not answer at $url"
}

USER_NAME=benchuser
USER_PASS=benchpass
NS=bench
CONN=reg

# ---------------------------------------------------------------- registry (htpasswd, bcrypt)
REG_PORT=$(free_port)
mkdir -p "$WORK/registry/data"
htpasswd -Bbn "$USER_NAME" "$USER_PASS" > "$WORK/registry/htpasswd"
cat > "$WORK/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$REG_PORT
  secret: blob-bench-not-a-secret
auth:
  htpasswd:
    realm: bench-realm
    path: $WORK/registry/htpasswd
EOF
docker-registry serve "$WORK/registry/config.yml" > "$WORK/registry.log" 2>&1 &
REG_PID=$!; PIDS+=("$REG_PID")
REG=http://127.0.0.1:$REG_PORT
wait_http "$REG/v2/" "$REG_PID" registry
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$USER_NAME:$USER_PASS" "$REG/v2/")
[ "$code" = 200 ] || die "registry rejects $USER_NAME (GET /v2/ → $code)"
log "registry on $REG (pid $REG_PID)"

# ---------------------------------------------------------------- the proxy
mkdir -p "$WORK/proxy/state"
cat > "$WORK/proxy/catalog.yaml" <<EOF
apiVersion: v1
kind: Secret
metadata: {name: reg-auth, namespace: $NS}
type: cpaas.io/distribution-registry-token
stringData: {username: $USER_NAME, password: $USER_PASS}
---
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {name: $CONN, namespace: $NS}
spec:
  connectorClassName: oci
  address: http://127.0.0.1:$REG_PORT
  auth: {name: tokenAuth, secretRef: {name: reg-auth}}
EOF
CONNECTORS_LOG=${CONNECTORS_LOG:-warn} "$BIN" up --catalog "$WORK/proxy/catalog.yaml" --state-dir "$WORK/proxy/state" \
  --listen 127.0.0.1:0 > "$WORK/proxy.out" 2> "$WORK/proxy.log" &
PROXY_PID=$!; PIDS+=("$PROXY_PID")
PROXY_ADDR=""
for _ in $(seq 200); do
  kill -0 "$PROXY_PID" 2>/dev/null || { cat "$WORK/proxy.log" >&2; die "the proxy exited during startup"; }
  PROXY_ADDR=$(sed -n 's/^listening on \(.*\)$/\1/p' "$WORK/proxy.out" | head -1)
  [ -n "$PROXY_ADDR" ] && break
  sleep 0.05
done
[ -n "$PROXY_ADDR" ] || die "the proxy printed no 'listening on' line"
PROXY=http://$PROXY_ADDR
PROXY_PREFIX=/v2/namespaces/$NS/connectors/$CONN
TOKEN=$("$BIN" token issue --state-dir "$WORK/proxy/state" --connectors "$NS/$CONN" --ttl 1h --subject blob-bench)
[ -n "$TOKEN" ] || die "no proxy token"
code=$(curl -s -o /dev/null -w '%{http_code}' -u "x:$TOKEN" "$PROXY$PROXY_PREFIX/")
[ "$code" = 200 ] || die "proxy ping $PROXY$PROXY_PREFIX/ → $code"
log "proxy on $PROXY (pid $PROXY_PID), $(grep -c '^connector ' "$WORK/proxy.out") connector(s): $(grep '^connector ' "$WORK/proxy.out" | head -1)"
proxy_status() { awk -v k="$1:" '$1==k{print $2}' "/proc/$PROXY_PID/status"; }   # kB
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
RSS_START_KB=$(proxy_status VmRSS)

# ---------------------------------------------------------------- nginx peer (optional)
NGX=""
if [ "$want_nginx" = 1 ]; then
  NGX_PORT=$(free_port)
  ND=$WORK/nginx
  mkdir -p "$ND/tmp"
  BASIC=$(printf '%s:%s' "$USER_NAME" "$USER_PASS" | base64 -w0)
  user_line=""; [ "$(id -u)" = 0 ] && user_line="user root;"   # workers stay in our 0700 work dir
  # Same path layout as the proxy (/v2/namespaces/<ns>/connectors/<c>/<repo>/…), Basic injected,
  # streaming both ways with 256k buffers (TESTGROUND G16: default 4k/8k buffers cap it at ~630 MiB/s).
  cat > "$ND/nginx.conf" <<EOF
daemon off;
$user_line
worker_processes 1;
pid $ND/nginx.pid;
error_log $ND/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $ND/tmp/body; proxy_temp_path $ND/tmp/proxy;
  fastcgi_temp_path $ND/tmp/fcgi; uwsgi_temp_path $ND/tmp/uwsgi; scgi_temp_path $ND/tmp/scgi;
  upstream registry { server 127.0.0.1:$REG_PORT; keepalive 16; }
  server {
    listen 127.0.0.1:$NGX_PORT;
    client_max_body_size 0;
    client_body_buffer_size 256k;
    location ~ ^/v2/namespaces/(?<ns>[^/]+)/connectors/(?<conn>[^/]+)/(?<rest>.+)\$ {
      proxy_pass http://registry/v2/\$rest\$is_args\$args;
      proxy_redirect ~^(?:https?://[^/]+)?/v2/(?<loc>.*)\$ /v2/namespaces/\$ns/connectors/\$conn/\$loc;
      proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header Authorization "Basic $BASIC";
      proxy_buffering off; proxy_request_buffering off;
      proxy_buffer_size 256k; proxy_buffers 4 256k; proxy_busy_buffers_size 256k;
      proxy_read_timeout 900s; proxy_send_timeout 900s;
    }
  }
}
EOF
  nginx -p "$ND" -e "$ND/error.log" -c "$ND/nginx.conf" > "$WORK/nginx.out" 2>&1 &
  NGX_PID=$!; PIDS+=("$NGX_PID")
  wait_http "http://127.0.0.1:$NGX_PORT/" "$NGX_PID" nginx
  NGX=http://127.0.0.1:$NGX_PORT
  log "nginx peer on $NGX (master pid $NGX_PID)"
fi

# ---------------------------------------------------------------- the blob
BLOB=$WORK/blob.bin
log "writing $SIZE_MIB MiB of random data"
head -c "$((SIZE_MIB * 1048576))" /dev/urandom > "$BLOB"
SIZE=$(stat -c %s "$BLOB")
DIGEST=sha256:$(sha256sum "$BLOB" | awk '{print $1}')
log "blob $DIGEST ($SIZE bytes)"

# ---------------------------------------------------------------- helpers
# per path kind (direct, proxy, nginx): base URL of /v2/, credentials, origin for relative Locations
base_of() {
  case "$1" in
    direct) echo "$REG/v2" ;;
    proxy)  echo "$PROXY$PROXY_PREFIX" ;;
    nginx)  echo "$NGX$PROXY_PREFIX" ;;
  esac
}
auth_of() {
  case "$1" in
    direct) echo "$USER_NAME:$USER_PASS" ;;
    proxy)  echo "x:$TOKEN" ;;
    nginx)  echo "" ;;
  esac
}
origin_of() {
  case "$1" in direct) echo "$REG" ;; proxy) echo "$PROXY" ;; nginx) echo "$NGX" ;; esac
}
curl_a() {  # kind, curl args...
  local kind=$1; shift
  local a; a=$(auth_of "$kind")
  if [ -n "$a" ]; then curl -u "$a" "$@"; else curl "$@"; fi
}

# start_upload KIND REPO → prints the absolute upload URL (with ?digest= appended)
start_upload() {
  local kind=$1 repo=$2 hdrs loc
  hdrs=$(curl_a "$kind" -sS --fail -D - -o /dev/null -X POST "$(base_of "$kind")/$repo/blobs/uploads/") \
    || die "$kind: POST $repo/blobs/uploads/ failed"
  loc=$(printf '%s\n' "$hdrs" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}' | tail -1)
  [ -n "$loc" ] || die "$kind: upload POST gave no Location"
  case "$loc" in
    /*) loc=$(origin_of "$kind")$loc ;;
    http://*|https://*) ;;
    *) die "$kind: unexpected Location $loc" ;;
  esac
  if [ "$kind" != direct ]; then
    case "$loc" in
      "$(origin_of "$kind")$PROXY_PREFIX/"*) ;;
      *) die "$kind: Location not rewritten into the proxy namespace: $loc" ;;
    esac
  fi
  case "$loc" in *\?*) loc="$loc&digest=$DIGEST" ;; *) loc="$loc?digest=$DIGEST" ;; esac
  echo "$loc"
}

# forget_blob: remove the blob and the repositories from the registry's storage, so the next PUT
# stores it anew (no cache is configured, the filesystem is the registry's only state).
forget_blob() {
  rm -rf "$WORK/registry/data/docker/registry/v2/blobs" "$WORK/registry/data/docker/registry/v2/repositories"
}

# CPU accounting per timed run, so that the report can say where the CPU went and how much of the
# machine *other* processes (other tenants) took: registry, relay (proxy or nginx) and client (curl,
# this shell's children) from /proc/<pid>/stat and `times`; the machine's busy time from /proc/stat
# (user+nice+system+steal; irq/softirq time is left out on both sides, loopback TCP work lands there).
pid_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
nginx_ticks() {
  local t=0 p
  [ -n "${NGX_PID:-}" ] || { echo 0; return; }
  for p in "$NGX_PID" $(cat "/proc/$NGX_PID/task/"*/children 2>/dev/null); do t=$(( t + $(pid_ticks "$p") )); done
  echo "$t"
}
# snap NAME: sets NAME to "wall_s busy registry proxy nginx client" (ticks). Runs `times` in *this*
# shell (in a $(…) subshell it would only see the subshell's own children).
snap() {
  times > "$WORK/times.txt"
  local client busy
  client=$(awk -v h="$CLK_TCK" 'NR==2{ t=0; for (i=1;i<=2;i++){ split($i,a,/[ms]/); t+=a[1]*60+a[2] } printf "%.0f", t*h }' "$WORK/times.txt")
  busy=$(awk '$1=="cpu"{print $2+$3+$4+$9}' /proc/stat)
  printf -v "$1" '%s %s %s %s %s %s' "$(date +%s.%N)" "$busy" "$(pid_ticks "$REG_PID")" "$(pid_ticks "$PROXY_PID")" \
    "$(nginx_ticks)" "$client"
}
# cpu_budget S0 S1 BYTES → "registry_s_per_GiB relay_s_per_GiB client_s_per_GiB others_pct" for KIND in $3
cpu_budget() {
  awk -v a="$1" -v b="$2" -v bytes="$3" -v kind="$4" -v n="$NCPU" -v h="$CLK_TCK" 'BEGIN{
    split(a,x," "); split(b,y," "); g=bytes/1073741824; w=y[1]-x[1];
    reg=(y[3]-x[3])/h; px=(y[4]-x[4])/h; ng=(y[5]-x[5])/h; cl=(y[6]-x[6])/h; busy=(y[2]-x[2])/h;
    relay=(kind=="proxy")?px:(kind=="nginx")?ng:0;
    oth=busy-reg-px-ng-cl; if (oth<0) oth=0;
    printf "%.2f %.2f %.2f %.0f", reg/g, relay/g, cl/g, (w>0)?100*oth/(w*n):0 }'
}

RESULTS=$WORK/results.tsv   # kind dir run mibs seconds bytes reg_s/GiB relay_s/GiB client_s/GiB others%
: > "$RESULTS"

# record KIND DIR RUN BYTES SECS S0 S1
record() {
  local kind=$1 dir=$2 run=$3 bytes=$4 secs=$5 mibs budget reg relay client oth
  mibs=$(awk -v b="$bytes" -v t="$secs" 'BEGIN{printf "%.0f", b/1048576/t}')
  budget=$(cpu_budget "$6" "$7" "$bytes" "$kind")
  read -r reg relay client oth <<<"$budget"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$dir" "$run" "$mibs" "$secs" "$bytes" \
    "$reg" "$relay" "$client" "$oth" >> "$RESULTS"
  log "$dir $kind run $run: $mibs MiB/s ($secs s; CPU s/GiB registry $reg relay $relay curl $client; other processes ${oth}% of the CPUs)"
}

# push KIND REPO RUN [extra curl args] → measures one monolithic PUT
push_once() {
  local kind=$1 repo=$2 run=$3; shift 3
  local url out code up secs S0 S1
  url=$(start_upload "$kind" "$repo")
  snap S0
  out=$(curl_a "$kind" -sS --http1.1 -o "$WORK/put.body" -w '%{http_code} %{size_upload} %{time_total}' \
    -H 'Content-Type: application/octet-stream' "$@" -T "$BLOB" "$url") || die "$kind push: curl failed"
  snap S1
  read -r code up secs <<<"$out"
  [ "$code" = 201 ] || die "$kind push: PUT → $code $(head -c 400 "$WORK/put.body")"
  [ "$up" = "$SIZE" ] || die "$kind push: uploaded $up of $SIZE bytes"
  record "$kind" push "$run" "$up" "$secs" "$S0" "$S1"
}

pull_once() {
  local kind=$1 repo=$2 run=$3
  local out code down secs S0 S1
  snap S0
  out=$(curl_a "$kind" -sS --http1.1 -o /dev/null -w '%{http_code} %{size_download} %{time_total}' \
    "$(base_of "$kind")/$repo/blobs/$DIGEST") || die "$kind pull: curl failed"
  snap S1
  read -r code down secs <<<"$out"
  [ "$code" = 200 ] || die "$kind pull: GET → $code"
  [ "$down" = "$SIZE" ] || die "$kind pull: got $down of $SIZE bytes"
  record "$kind" pull "$run" "$down" "$secs" "$S0" "$S1"
}

KINDS=(direct proxy)
[ -n "$NGX" ] && KINDS+=(nginx)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- 1. correctness (untimed)
# Push through the proxy with curl's defaults (incl. `Expect: 100-continue`), then check the registry
# has the blob under the right digest, and that a pull through the proxy returns the same bytes.
log "correctness: push through the proxy, HEAD direct, pull through the proxy and hash"
forget_blob
t0=$(date +%s.%N)
url=$(start_upload proxy "$NS/check")
code=$(curl -sS -u "x:$TOKEN" -o "$WORK/put.body" -w '%{http_code}' -T "$BLOB" "$url") || die "correctness push failed"
[ "$code" = 201 ] || die "correctness push: PUT → $code $(head -c 400 "$WORK/put.body")"
CHECK_PUSH_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
hdrs=$(curl -sS -I -u "$USER_NAME:$USER_PASS" "$REG/v2/$NS/check/blobs/$DIGEST" | tr -d '\r')
head_code=$(printf '%s\n' "$hdrs" | awk 'NR==1{print $2}')
head_digest=$(printf '%s\n' "$hdrs" | awk 'tolower($1)=="docker-content-digest:"{print $2}')
head_len=$(printf '%s\n' "$hdrs" | awk 'tolower($1)=="content-length:"{print $2}')
[ "$head_code" = 200 ] || die "HEAD direct after the proxy push → $head_code"
[ "$head_digest" = "$DIGEST" ] || die "HEAD direct: Docker-Content-Digest $head_digest, want $DIGEST"
[ "$head_len" = "$SIZE" ] || die "HEAD direct: Content-Length $head_len, want $SIZE"
pulled=$(set -o pipefail; curl -sS --fail --http1.1 -u "x:$TOKEN" "$PROXY$PROXY_PREFIX/$NS/check/blobs/$DIGEST" | sha256sum | awk '{print "sha256:"$1}') \
  || die "pull through the proxy failed"
[ "$pulled" = "$DIGEST" ] || die "bytes pulled through the proxy hash to $pulled, want $DIGEST"
CHECK="push through the proxy (curl default \`Expect: 100-continue\`) → 201 in ${CHECK_PUSH_S} s; HEAD direct → 200, \`Docker-Content-Digest\` = pushed digest, Content-Length $SIZE; sha256 of the bytes pulled through the proxy = the file's"
if [ -n "$NGX" ]; then
  url=$(start_upload nginx "$NS/check-nginx")
  code=$(curl -sS -o "$WORK/put.body" -w '%{http_code}' -H 'Expect:' -T "$BLOB" "$url") || die "nginx check push failed"
  [ "$code" = 201 ] || die "nginx check push: PUT → $code"
  pulled=$(set -o pipefail; curl -sS --fail --http1.1 "$NGX$PROXY_PREFIX/$NS/check-nginx/blobs/$DIGEST" | sha256sum | awk '{print "sha256:"$1}')
  [ "$pulled" = "$DIGEST" ] || die "nginx peer: pulled bytes hash to $pulled"
  CHECK+="; nginx peer: push 201 and pulled bytes' sha256 match"
fi
log "correctness OK"

# ---------------------------------------------------------------- 2. push, timed
# `Expect:` is disabled so that no path waits for a `100 Continue` (curl would send it for -T).
for run in $(seq "$RUNS"); do
  # alternate the order so that a drift in machine load does not favour one path
  order=("${KINDS[@]}")
  if [ $((run % 2)) = 0 ]; then
    order=(); for ((i=${#KINDS[@]}-1; i>=0; i--)); do order+=("${KINDS[$i]}"); done
  fi
  for kind in "${order[@]}"; do
    forget_blob
    push_once "$kind" "$NS/push-$kind-$run" "$run" -H 'Expect:'
  done
done

# ---------------------------------------------------------------- 3. pull, timed
forget_blob
url=$(start_upload direct "$NS/big")
code=$(curl -sS -u "$USER_NAME:$USER_PASS" -o /dev/null -w '%{http_code}' -H 'Expect:' -T "$BLOB" "$url")
[ "$code" = 201 ] || die "seeding $NS/big: PUT → $code"
for kind in "${KINDS[@]}"; do   # warm-up (page cache, connection pools), untimed
  curl_a "$kind" -sS --fail --http1.1 -o /dev/null "$(base_of "$kind")/$NS/big/blobs/$DIGEST" || die "$kind warm-up pull failed"
done
for run in $(seq "$PULL_RUNS"); do
  order=("${KINDS[@]}")
  if [ $((run % 2)) = 0 ]; then
    order=(); for ((i=${#KINDS[@]}-1; i>=0; i--)); do order+=("${KINDS[$i]}"); done
  fi
  for kind in "${order[@]}"; do pull_once "$kind" "$NS/big" "$run"; done
done

# ---------------------------------------------------------------- 4. proxy memory
RSS_HWM_KB=$(proxy_status VmHWM)
RSS_END_KB=$(proxy_status VmRSS)
PROXY_THREADS=$(proxy_status Threads)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
kill -0 "$PROXY_PID" || die "the proxy died during the runs"
PROXY_WARNINGS=$(grep -ciE 'warn|error' "$WORK/proxy.log" || true)

# ---------------------------------------------------------------- 5. report
stat_of() {  # kind dir column how(median|max) → the median or the best of the runs
  awk -F'\t' -v k="$1" -v d="$2" -v c="$3" '$1==k && $2==d {print $c}' "$RESULTS" | sort -g |
    awk -v how="$4" '{a[NR]=$1} END{ if (NR==0) {print "-"; exit}
      if (how=="max") { print a[NR]; exit }
      if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2 }'
}
median() { stat_of "$1" "$2" "${3:-4}" median; }
best() { stat_of "$1" "$2" 4 max; }
runs_of() { awk -F'\t' -v k="$1" -v d="$2" -v c="${3:-4}" '$1==k && $2==d {print $c}' "$RESULTS" | paste -sd/ -; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0==0 || a=="-") print "-"; else printf "%.2f", a/b }'; }
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
label_of() {
  case "$1" in
    direct) echo "registry direct (Basic, htpasswd)" ;;
    proxy)  echo "**Connectors proxy** (token → Basic injected)" ;;
    nginx)  echo "nginx peer (Basic injected, 256k buffers)" ;;
  esac
}
PUSH_D=$(median direct push); PULL_D=$(median direct pull)
PUSH_P=$(median proxy push);  PULL_P=$(median proxy pull)
PUSH_RATIO=$(ratio "$PUSH_P" "$PUSH_D"); PULL_RATIO=$(ratio "$PULL_P" "$PULL_D")
verdict() { awk -v r="$1" -v g="$2" 'BEGIN{ if (r=="-") print "n/a"; else if (r+0 >= g+0) print "met"; else print "**missed**" }'; }
RSS_OK=$(awk -v k="$RSS_HWM_KB" 'BEGIN{ if (k/1024 < 100) print "met"; else print "**missed**" }')

cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
mem_total=$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)
os=$( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") || uname -s)
reg_ver=$(docker-registry --version 2>/dev/null | awk '{print $3}'); reg_pkg=$(dpkg-query -W -f='${Version}' docker-registry 2>/dev/null || true)
curl_ver=$(curl --version | awk 'NR==1{print $2}')
ngx_ver=$( [ -n "$NGX" ] && nginx -v 2>&1 | sed "s/^nginx version: //" || echo "nginx: not used")
bin_ver=$("$BIN" --version 2>/dev/null || echo "?")
git_rev=$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo "?")
fs_type=$(df -PT "$WORK" | awk 'NR==2{print $2}')

cat <<EOF
### Blob throughput, $SIZE_MIB MiB blob, $RUNS push / $PULL_RUNS pull runs per path ($(date -u '+%Y-%m-%d %H:%M UTC'))

| path | push MiB/s (median) | push ratio | pull MiB/s (median) | pull ratio | best push / pull MiB/s | best-run ratio push / pull |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
EOF
for kind in "${KINDS[@]}"; do
  pm=$(median "$kind" push); gm=$(median "$kind" pull); pb=$(best "$kind" push); gb=$(best "$kind" pull)
  printf '| %s | %s | %s | %s | %s | %s / %s | %s / %s |\n' "$(label_of "$kind")" "$pm" "$(ratio "$pm" "$PUSH_D")" \
    "$gm" "$(ratio "$gm" "$PULL_D")" "$pb" "$gb" "$(ratio "$pb" "$(best direct push)")" "$(ratio "$gb" "$(best direct pull)")"
done
cat <<EOF

| goal | measured (medians) | verdict |
| --- | --- | --- |
| push through the proxy ≥ 0.9 × direct | $PUSH_RATIO ($PUSH_P vs $PUSH_D MiB/s) | $(verdict "$PUSH_RATIO" 0.9) |
| pull through the proxy ≥ 0.9 × direct | $PULL_RATIO ($PULL_P vs $PULL_D MiB/s) | $(verdict "$PULL_RATIO" 0.9) |
| proxy peak RSS < 100 MiB | VmHWM $(mib "$RSS_HWM_KB") MiB | $RSS_OK |

Proxy process: RSS $(mib "$RSS_START_KB") MiB after start, peak (VmHWM) $(mib "$RSS_HWM_KB") MiB, $(mib "$RSS_END_KB") MiB at the end; $PROXY_THREADS threads;
warn/error lines in its log: $PROXY_WARNINGS.

Every run (MiB/s; CPU seconds per GiB moved, by process; "others" = share of all $NCPU CPUs that other processes on the machine took during the run):

| path | dir | run | MiB/s | registry s/GiB | relay s/GiB | curl s/GiB | others % |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |
EOF
awk -F'\t' -v OFS=' | ' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $7, $8, $9, $10 }' "$RESULTS"
cat <<EOF

Median CPU seconds per GiB (registry + relay + curl): $(for kind in "${KINDS[@]}"; do for dir in push pull; do
  printf '%s %s %s + %s + %s; ' "$kind" "$dir" "$(median "$kind" "$dir" 7)" "$(median "$kind" "$dir" 8)" "$(median "$kind" "$dir" 9)"; done; done | sed 's/; $//').

Correctness (untimed, once): $CHECK.

Machine: $NCPU CPUs ($cpu_model), $mem_total RAM, $os, kernel $(uname -r); work dir on $fs_type;
load average $LOAD_START at start, $LOAD_END at the end.
Versions: docker-registry $reg_ver${reg_pkg:+ (Debian $reg_pkg)}, curl $curl_ver, $ngx_ver, $bin_ver (git $git_rev).
Method: curl --http1.1 on 127.0.0.1; push = one monolithic \`PUT <upload location>&digest=…\` with \`-T file\`
and \`Expect:\` disabled (the POST that opens the upload is not timed; the registry's storage is emptied before
every push); pull = \`GET /v2/<repo>/blobs/<digest>\` to /dev/null after an untimed warm-up; MiB/s = bytes / curl
\`time_total\`; paths alternate order run by run; MiB = 2^20 bytes.
EOF
