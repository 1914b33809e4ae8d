#!/usr/bin/env bash
# Soak: DURATION seconds (default 600) at CONC concurrent clients (default 100) of mixed pulls and pushes
# through both modes — reverse (/v2/namespaces/<ns>/connectors/<c>/…) and forward (absolute-form
# http:// through HTTP_PROXY-style `curl -x`) — against a real docker-registry with htpasswd auth.
#
# Each client loops: reverse pull, reverse push, forward pull, forward push (a push is POST + PUT of one
# of BLOBS pre-made 64 KiB blobs; a pull is GET of the seeded 1 MiB blob, digest checked by size).
# Reports: requests and unexpected errors per kind, proxy RSS at start / every minute / end, the open
# connection and in-flight gauges from /metrics after the load (must be 0), and whether the registry
# password (a canary) appears in the proxy's log or audit log. Exit status 1 on any unexpected error,
# a leak or a canary hit.
#
#   DURATION=600 CONC=100 bench/soak.sh            # the recorded run
#   DURATION=30 CONC=10 RECORD=0 bench/soak.sh     # a quick check, results not appended
#   CONNECTORS_BIN=/path/to/connectors             # a binary to use (default: release build)
#
# Appends a section to the END of bench/RESULTS.md (unless RECORD=0). A script, not a CI test.
set -euo pipefail
SCRIPT_NAME=soak
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-600}
CONC=${CONC:-100}
BLOBS=${BLOBS:-16}
RECORD=${RECORD:-1}

for c in curl htpasswd docker-registry sha256sum; do
  command -v "$c" >/dev/null || die "needs $c (apt-get install curl apache2-utils docker-registry)"
done
build_proxy
case "$BIN" in */debug/*) BIN_KIND=debug ;; *) BIN_KIND=release ;; esac
make_workdir soak 1048576
BIG_PATHS+=(registry/data)

# The registry password is the canary: it must never show in the proxy's log or audit log.
USER_PASS="Canary-Soak-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
start_registry
wait_http "http://127.0.0.1:$REG_PORT/v2/" "$REG_PID" registry
REG=http://127.0.0.1:$REG_PORT

mkdir -p "$WORK/proxy" "$WORK/blobs" "$WORK/out"
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
  address: $REG
  auth: {name: tokenAuth, secretRef: {name: reg-auth}}
EOF
ADMIN_PORT=$(free_port)
CONNECTORS_LOG=info start_proxy "$WORK/proxy/catalog.yaml" --log-format json \
  --admin-listen "127.0.0.1:$ADMIN_PORT" --audit-log "$WORK/audit.log"
PROXY=http://$PROXY_ADDR
PREFIX=$PROXY/v2/namespaces/$NS/connectors/$CONN
ADMIN=http://127.0.0.1:$ADMIN_PORT
wait_http "$ADMIN/readyz" "$PROXY_PID" "admin listener"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$ADMIN/readyz")" = 200 ] || die "/readyz is not 200"
log "proxy $PROXY (pid $PROXY_PID), admin $ADMIN, registry $REG"

# ---------------------------------------------------------------- seed: one 1 MiB blob, BLOBS push blobs
head -c $((1 << 20)) /dev/urandom > "$WORK/blobs/seed"
SEED=sha256:$(sha256sum "$WORK/blobs/seed" | awk '{print $1}')
push_direct() {  # file digest
  local loc
  loc=$(curl -sS --fail -u "$USER_NAME:$USER_PASS" -X POST -D - -o /dev/null "$REG/v2/soak/seed/blobs/uploads/" \
    | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  case "$loc" in /*) loc=$REG$loc ;; esac
  curl -sS --fail -u "$USER_NAME:$USER_PASS" -X PUT -H 'Content-Type: application/octet-stream' \
    --data-binary "@$1" -o /dev/null "$loc&digest=$2" || die "seeding $2 failed"
}
push_direct "$WORK/blobs/seed" "$SEED"
for i in $(seq 0 $((BLOBS - 1))); do
  head -c 65536 /dev/urandom > "$WORK/blobs/b$i"
  sha256sum "$WORK/blobs/b$i" | awk '{print "sha256:"$1}' > "$WORK/blobs/b$i.digest"
done

# ---------------------------------------------------------------- one client
# Writes one line per request to $WORK/out/<w>: kind http_code [size]; "ERR" lines are unexpected.
FWD=(-x "http://$NS%2F$CONN:$TOKEN@$PROXY_ADDR")
REV=(-u "soak:$TOKEN")
client() {
  local w=$1 end=$2 n=0 out=$WORK/out/$w kind base args code loc i digest
  while [ "$(date +%s)" -lt "$end" ]; do
    for kind in rpull rpush fpull fpush; do
      case $kind in
        r*) base=$PREFIX; args=("${REV[@]}") ;;
        f*) base=$REG/v2; args=("${FWD[@]}") ;;
      esac
      case $kind in
        *pull)
          code=$(curl -sS "${args[@]}" -o /dev/null -w '%{http_code} %{size_download}' \
            "$base/soak/seed/blobs/$SEED" 2>>"$out.err") || code="curl-failed"
          if [ "$code" = "200 1048576" ]; then echo "$kind ok" >> "$out"; else echo "$kind ERR $code" >> "$out"; fi
          ;;
        *push)
          i=$(( (w + n) % BLOBS )); digest=$(cat "$WORK/blobs/b$i.digest")
          loc=$(curl -sS "${args[@]}" -X POST -D - -o /dev/null "$base/soak/w$((w % 10))/blobs/uploads/" 2>>"$out.err" \
            | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}') || loc=""
          if [ -z "$loc" ]; then echo "$kind ERR no-location" >> "$out"; continue; fi
          case "$loc" in /*) loc=${base%%/v2*}$loc ;; esac
          case "$loc" in *\?*) loc="$loc&digest=$digest" ;; *) loc="$loc?digest=$digest" ;; esac
          code=$(curl -sS "${args[@]}" -X PUT -H 'Content-Type: application/octet-stream' \
            --data-binary "@$WORK/blobs/b$i" -o /dev/null -w '%{http_code}' "$loc" 2>>"$out.err") || code="curl-failed"
          if [ "$code" = 201 ]; then echo "$kind ok" >> "$out"; else echo "$kind ERR $code" >> "$out"; fi
          ;;
      esac
    done
    n=$((n + 1))
  done
}

# ---------------------------------------------------------------- run
RSS_START_KB=$(proxy_status VmRSS)
log "load: $CONC clients for ${DURATION}s; proxy RSS at start $RSS_START_KB kB"
START=$(date +%s)
END=$((START + DURATION))
CLIENTS=()
for w in $(seq 1 "$CONC"); do
  client "$w" "$END" &
  CLIENTS+=($!); PIDS+=($!)
done
RSS_SAMPLES=()
while [ "$(date +%s)" -lt "$END" ]; do
  sleep $(( DURATION < 60 ? DURATION : 60 ))
  kill -0 "$PROXY_PID" 2>/dev/null || die "the proxy died during the soak (see $WORK/proxy.log)"
  RSS_SAMPLES+=("$(proxy_status VmRSS)")
  log "t+$(( $(date +%s) - START ))s RSS ${RSS_SAMPLES[-1]} kB, $(cat "$WORK"/out/[0-9]* 2>/dev/null | wc -l) requests"
done
for pid in "${CLIENTS[@]}"; do wait "$pid" || true; done
ELAPSED=$(( $(date +%s) - START ))
RSS_END_KB=$(proxy_status VmRSS)
RSS_PEAK_KB=$(proxy_status VmHWM)

# ---------------------------------------------------------------- after the load
settled=""
for _ in $(seq 100); do
  metrics=$(curl -s "$ADMIN/metrics")
  open=$(awk '$1=="connectors_open_connections"{print $2}' <<<"$metrics")
  inflight=$(awk '$1=="connectors_requests_in_flight"{print $2}' <<<"$metrics")
  if [ "$open" = 0 ] && [ "$inflight" = 0 ]; then settled=yes; break; fi
  sleep 0.1
done
echo "$metrics" > "$WORK/metrics.txt"
TOTAL=$(cat "$WORK"/out/[0-9]* | wc -l)
ERRS=$(cat "$WORK"/out/[0-9]* | grep -c ' ERR ' || true)
per_kind() { cat "$WORK"/out/[0-9]* | awk -v k="$1" '$1==k{n++; if ($2=="ERR") e++} END{printf "%d / %d", n+0, e+0}'; }
AUDIT_LINES=$(wc -l < "$WORK/audit.log")
AUDIT_BAD=$(python3 -c 'import json,sys
bad=0
for l in open(sys.argv[1]):
    try: json.loads(l)
    except Exception: bad+=1
print(bad)' "$WORK/audit.log")
ACCESS_LINES=$(grep -c '"target":"connectors::access"' "$WORK/proxy.log" || true)
CANARY_HITS=$(cat "$WORK/proxy.log" "$WORK/audit.log" "$WORK/proxy.out" | grep -c -- "$USER_PASS" || true)
B64=$(printf '%s:%s' "$USER_NAME" "$USER_PASS" | base64 -w0)
CANARY_HITS=$(( CANARY_HITS + $(cat "$WORK/proxy.log" "$WORK/audit.log" | grep -c -- "$B64" || true) ))
TOKEN_HITS=$(cat "$WORK/proxy.log" "$WORK/audit.log" | grep -c -- "$TOKEN" || true)
RATE=$(awk -v n="$TOTAL" -v s="$ELAPSED" 'BEGIN{printf "%.0f", n/s}')
if [ "$settled" = yes ]; then gauges="0 / 0"; else gauges="$open / $inflight"; fi
log "$TOTAL requests in ${ELAPSED}s ($RATE/s), $ERRS unexpected errors; RSS $RSS_START_KB → $RSS_END_KB kB (peak $RSS_PEAK_KB); open/in-flight after: $gauges; canary hits $CANARY_HITS, token hits $TOKEN_HITS; audit $AUDIT_LINES lines ($AUDIT_BAD not JSON)"
if [ "$ERRS" -gt 0 ]; then
  log "first errors:"; cat "$WORK"/out/[0-9]* | grep ' ERR ' | sort | uniq -c | sort -rn | head >&2
  head -5 "$WORK"/out/*.err >&2 2>/dev/null || true
fi

if [ "$RECORD" = 1 ]; then
  machine_facts
  samples=$(IFS=' '; echo "${RSS_SAMPLES[*]}")
  cat >> "$REPO_ROOT/bench/RESULTS.md" <<EOF

## Soak (bench/soak.sh)

$(date -u +%Y-%m-%d) · ${ELAPSED} s at concurrency $CONC · $(nproc) CPUs shared with other work · $BIN_KIND build of \`connectors\` (HEAD $(git -C "$REPO_ROOT" rev-parse --short HEAD)) · docker-registry $reg_ver, htpasswd (bcrypt) · curl $curl_ver

Each client loops over: reverse pull (GET a 1 MiB blob via \`/v2/namespaces/$NS/connectors/$CONN/…\`), reverse push
(POST + PUT of a 64 KiB blob), forward pull and forward push (the same, absolute-form \`http://\` through
\`curl -x http://$NS%2F$CONN:<token>@<proxy>\`). The proxy runs with \`--log-format json\` at info (one access line per
request), \`--audit-log\` and \`--admin-listen\`.

| figure | value |
|---|---|
| client operations (a pull is one request, a push two: POST + PUT) | $TOTAL ($RATE/s) |
| unexpected errors | $ERRS |
| reverse pull / errors | $(per_kind rpull) |
| reverse push / errors | $(per_kind rpush) |
| forward pull / errors | $(per_kind fpull) |
| forward push / errors | $(per_kind fpush) |
| proxy RSS start → end (peak) | $(mib "$RSS_START_KB") → $(mib "$RSS_END_KB") MiB ($(mib "$RSS_PEAK_KB") MiB) |
| RSS every minute (kB) | $samples |
| open connections / requests in flight after the load (\`/metrics\`) | $gauges |
| access-log lines (JSON) / audit-log lines (JSON, unparsable) | $ACCESS_LINES / $AUDIT_LINES ($AUDIT_BAD) |
| canary password (plain or Basic) in proxy log, stdout, audit log | $CANARY_HITS |
| proxy token in proxy log, audit log | $TOKEN_HITS |
EOF
  log "appended to bench/RESULTS.md"
fi

[ "$ERRS" = 0 ] && [ "$settled" = yes ] && [ "$CANARY_HITS" = 0 ] && [ "$TOKEN_HITS" = 0 ] && [ "$AUDIT_BAD" = 0 ] \
  || die "soak failed: $ERRS errors, gauges $gauges, canary $CANARY_HITS, token $TOKEN_HITS, bad audit lines $AUDIT_BAD"
log "soak passed"
