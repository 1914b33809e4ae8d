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
#   THREADS=N            pass --threads N to the proxy (default: its own, one worker per CPU)
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
SCRIPT_NAME=blob.sh
TOKEN=""
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BIG_PATHS=(blob.bin registry/data)

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
    elif can_install; then
      want_nginx=1; need_install+=(nginx-light)
    else log "nginx not available: skipping the nginx peer (NGINX=1 to insist)"; fi ;;
  *) die "NGINX must be auto, 1 or 0" ;;
esac
apt_install "${need_install[@]}"
command -v sha256sum >/dev/null || die "sha256sum (coreutils) is required"

# ---------------------------------------------------------------- proxy binary
build_proxy

# ---------------------------------------------------------------- work directory
make_workdir connectors-blob-bench $(( SIZE_MIB * 1024 * 3 + 262144 ))

# ---------------------------------------------------------------- registry (htpasswd, bcrypt)
start_registry
REG=http://127.0.0.1:$REG_PORT
wait_http "$REG/v2/" "$REG_PID" registry
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$USER_NAME:$USER_PASS" "$REG/v2/")
[ "$code" = 200 ] || die "registry rejects $USER_NAME (GET /v2/ → $code)"
log "registry on $REG (pid $REG_PID)"

# ---------------------------------------------------------------- the proxy
mkdir -p "$WORK/proxy"
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
start_proxy "$WORK/proxy/catalog.yaml" ${THREADS:+--threads "$THREADS"}
PROXY=http://$PROXY_ADDR
PROXY_PREFIX=/v2/namespaces/$NS/connectors/$CONN
code=$(curl -s -o /dev/null -w '%{http_code}' -u "x:$TOKEN" "$PROXY$PROXY_PREFIX/")
[ "$code" = 200 ] || die "proxy ping $PROXY$PROXY_PREFIX/ → $code"
log "proxy on $PROXY (pid $PROXY_PID), $(grep -c '^connector ' "$WORK/proxy.out") connector(s): $(grep '^connector ' "$WORK/proxy.out" | head -1)"
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

# CPU accounting (see lib.sh): the relays are the proxy and the nginx peer (master + workers)
RELAY_KINDS=(proxy nginx)
relay_ticks() {
  case "$1" in
    proxy) pid_ticks "$PROXY_PID" ;;
    nginx) tree_ticks "${NGX_PID:-}" ;;
  esac
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
profile_proxy "blob-pull-$SIZE_MIB" curl_a proxy -sS --http1.1 -o /dev/null "$(base_of proxy)/$NS/big/blobs/$DIGEST"

# ---------------------------------------------------------------- 4. proxy memory
RSS_HWM_KB=$(proxy_status VmHWM)
RSS_END_KB=$(proxy_status VmRSS)
PROXY_THREADS=$(proxy_status Threads)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
kill -0 "$PROXY_PID" || die "the proxy died during the runs"
PROXY_WARNINGS=$(grep -ciE 'warn|error' "$WORK/proxy.log" || true)

# ---------------------------------------------------------------- 5. report
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
RSS_OK=$(awk -v k="$RSS_HWM_KB" 'BEGIN{ if (k/1024 < 100) print "met"; else print "**missed**" }')

machine_facts
ngx_ver=$( [ -n "$NGX" ] && nginx -v 2>&1 | sed "s/^nginx version: //" || echo "nginx: not used")
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

Proxy process (\`--threads ${THREADS:-default}\`): RSS $(mib "$RSS_START_KB") MiB after start, peak (VmHWM) $(mib "$RSS_HWM_KB") MiB, $(mib "$RSS_END_KB") MiB at the end; $PROXY_THREADS threads;
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
