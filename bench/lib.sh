# Shared helpers for the bench/ scripts (blob.sh, forward.sh). Sourced, not run.
#
# The sourcing script sets SCRIPT_NAME (for log lines) and then calls what it needs. Conventions:
# every process started goes into PIDS (killed by PID on exit, children of a process that forks are the
# script's own job to add); WORK is the mktemp work directory (deleted on success, kept on failure or
# with KEEP=1, minus the large files listed in BIG_PATHS).
# shellcheck shell=bash

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT_NAME=${SCRIPT_NAME:-bench}

log() { printf '[%s %s] %s\n' "$SCRIPT_NAME" "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- processes and cleanup
PIDS=()
WORK=""
BIG_PATHS=()        # relative to WORK: removed even when the work directory is kept
CLEANUP_HOOKS=()    # commands run (in order) before the processes are killed
cleanup() {
  local rc=$?
  local hook pid
  for hook in "${CLEANUP_HOOKS[@]}"; do eval "$hook" || true; done
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    # bench/run collects the raw per-run tables of each script (EXPORT_DIR, file names prefixed EXPORT_PREFIX)
    if [ -n "${EXPORT_DIR:-}" ]; then
      for p in "$WORK"/*.tsv; do [ -f "$p" ] && cp "$p" "$EXPORT_DIR/${EXPORT_PREFIX:-}$(basename "$p")"; done
    fi
    if [ "${KEEP:-}" = 1 ] || [ $rc -ne 0 ]; then
      log "work directory kept: $WORK"
      # the random blob and the registry data are large; logs and configs are what matter
      for p in "${BIG_PATHS[@]}"; do rm -rf "${WORK:?}/$p"; done
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
# apt_install PKG... : installs what is missing (callers pass only missing packages); honours NO_INSTALL=1
apt_install() {
  [ $# -gt 0 ] || return 0
  [ "${NO_INSTALL:-}" = 1 ] && die "missing packages: $* (NO_INSTALL=1)"
  local SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  log "installing $*"
  $SUDO apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >&2 \
    || die "apt-get install $* failed"
}
# can_install: true if apt-get may be used without asking (root, apt-get present, NO_INSTALL unset)
can_install() { [ "${NO_INSTALL:-}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

# ---------------------------------------------------------------- proxy binary
# build_proxy: sets BIN (CONNECTORS_BIN, or the release build under CARGO_TARGET_DIR / target)
build_proxy() {
  if [ -n "${CONNECTORS_BIN:-}" ]; then
    BIN=$CONNECTORS_BIN
  else
    local target_dir=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
    case "$target_dir" in /*) ;; *) target_dir=$REPO_ROOT/$target_dir ;; esac
    BIN=$target_dir/release/connectors
    if [ "${NO_BUILD:-}" != 1 ]; then
      log "cargo build --release -p connectors (a no-op when up to date)"
      (cd "$REPO_ROOT" && cargo build --release -p connectors >&2) || die "release build failed (set CONNECTORS_BIN or NO_BUILD=1)"
    fi
  fi
  [ -x "$BIN" ] || die "no proxy binary at $BIN"
}

# ---------------------------------------------------------------- work directory, ports
# make_workdir NAME NEED_KIB: WORK = fresh mode-0700 directory (the proxy's signing key and CA key live in it)
make_workdir() {
  WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/$1.XXXXXX")
  log "work directory $WORK"
  local need_kib=$2 avail_kib
  avail_kib=$(df -Pk "$WORK" | awk 'NR==2{print $4}')
  [ "$avail_kib" -ge "$need_kib" ] || die "not enough space in $WORK: need $((need_kib/1024)) MiB, have $((avail_kib/1024)) MiB"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {  # a random port nobody listens on (each server is up before the next port is picked)
  local p
  for _ in $(seq 200); do
    p=$(( 20000 + RANDOM % 40000 ))
    if ! port_in_use "$p"; then echo "$p"; return 0; fi
  done
  die "no free port found"
}
wait_http() {  # url pid name [curl args…]: until any HTTP answer
  local url=$1 pid=$2 name=$3; shift 3
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || die "$name exited during startup (see $WORK/*.log)"
    if curl -s -o /dev/null --max-time 1 "$@" "$url"; then return 0; fi
    sleep 0.05
  done
  die "$name did not answer at $url"
}
wait_port() {  # port pid name: until something accepts TCP connections on 127.0.0.1:port
  local port=$1 pid=$2 name=$3
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || die "$name exited during startup (see $WORK/*.log)"
    port_in_use "$port" && return 0
    sleep 0.05
  done
  die "$name did not listen on 127.0.0.1:$port"
}

USER_NAME=benchuser
USER_PASS=benchpass
NS=bench
CONN=reg

# ---------------------------------------------------------------- registry (htpasswd, bcrypt)
# start_registry [CERT KEY]: CNCF Distribution on a free port, htpasswd auth, storage in $WORK/registry/data,
# TLS when CERT and KEY are given. Sets REG_PORT, REG_PID.
start_registry() {
  # another process may take the free port between the check and the bind: retry on "address already in use"
  local attempt
  for attempt in 1 2 3 4 5; do
    start_registry_once "$@"
    for _ in $(seq 10); do kill -0 "$REG_PID" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$REG_PID" 2>/dev/null && return 0
    grep -q 'address already in use' "$WORK/registry.log" || return 0   # wait_http reports the real failure
    log "registry port $REG_PORT was taken meanwhile; retrying with another port"
  done
}
start_registry_once() {
  local cert=${1:-} key=${2:-} tls=""
  REG_PORT=$(free_port)
  mkdir -p "$WORK/registry/data"
  htpasswd -Bbn "$USER_NAME" "$USER_PASS" > "$WORK/registry/htpasswd"
  [ -n "$cert" ] && tls="  tls:
    certificate: $cert
    key: $key"
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
$tls
auth:
  htpasswd:
    realm: bench-realm
    path: $WORK/registry/htpasswd
EOF
  docker-registry serve "$WORK/registry/config.yml" > "$WORK/registry.log" 2>&1 &
  REG_PID=$!; PIDS+=("$REG_PID")
}

# ---------------------------------------------------------------- the proxy
# start_proxy CATALOG [extra `up` args…]: the proxy on 127.0.0.1:0, state in $WORK/proxy/state.
# Sets PROXY_PID, PROXY_ADDR (host:port), TOKEN (for connector $NS/$CONN).
start_proxy() {
  local catalog=$1; shift
  mkdir -p "$WORK/proxy/state"
  # a fresh file: the child truncates it only once it runs, and a restart must not read the last "listening on"
  rm -f "$WORK/proxy.out"
  CONNECTORS_LOG=${CONNECTORS_LOG:-warn} "$BIN" up --catalog "$catalog" --state-dir "$WORK/proxy/state" \
    --listen 127.0.0.1:0 "$@" > "$WORK/proxy.out" 2>> "$WORK/proxy.log" &
  PROXY_PID=$!; PIDS+=("$PROXY_PID")
  PROXY_ADDR=""
  for _ in $(seq 200); do
    kill -0 "$PROXY_PID" 2>/dev/null || { cat "$WORK/proxy.log" >&2; die "the proxy exited during startup"; }
    PROXY_ADDR=$( { sed -n 's/^listening on \(.*\)$/\1/p' "$WORK/proxy.out" 2>/dev/null || true; } | head -1)
    [ -n "$PROXY_ADDR" ] && break
    sleep 0.05
  done
  [ -n "$PROXY_ADDR" ] || die "the proxy printed no 'listening on' line"
  if [ -z "${TOKEN:-}" ]; then
    TOKEN=$("$BIN" token issue --state-dir "$WORK/proxy/state" --connectors "$NS/$CONN" --ttl 1h --subject "$SCRIPT_NAME")
    [ -n "$TOKEN" ] || die "no proxy token"
  fi
}
# stop_pid PID: kill one process we started, wait for it, drop it from PIDS
stop_pid() {
  local pid=$1 p keep=()
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
proxy_status() { awk -v k="$1:" '$1==k{print $2}' "/proc/$PROXY_PID/status"; }   # kB
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

# ---------------------------------------------------------------- CPU accounting
# Per timed run, so that the report can say where the CPU went and how much of the machine *other*
# processes (other tenants) took: registry, each relay, and client (curl, this shell's children) from
# /proc/<pid>/stat and `times`; the machine's busy time from /proc/stat (user+nice+system+steal;
# irq/softirq time is left out on both sides, loopback TCP work lands there).
#
# The sourcing script sets RELAY_KINDS (e.g. (proxy nginx)) and defines relay_ticks KIND (CPU ticks of
# that relay's processes so far; 0 if not running).
pid_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
tree_ticks() {  # PID and its live descendants
  local t=0 p
  [ -n "${1:-}" ] || { echo 0; return; }
  t=$(pid_ticks "$1")
  for p in $(cat "/proc/$1/task/"*/children 2>/dev/null); do t=$(( t + $(tree_ticks "$p") )); done
  echo "$t"
}
# snap NAME: sets NAME to "wall_s busy registry client relay1 relay2 …" (ticks; relays in RELAY_KINDS
# order). Runs `times` in *this* shell (in a $(…) subshell it would only see the subshell's own children).
snap() {
  times > "$WORK/times.txt"
  local client busy relays="" k
  client=$(awk -v h="$CLK_TCK" 'NR==2{ t=0; for (i=1;i<=2;i++){ split($i,a,/[ms]/); t+=a[1]*60+a[2] } printf "%.0f", t*h }' "$WORK/times.txt")
  busy=$(awk '$1=="cpu"{print $2+$3+$4+$9}' /proc/stat)
  for k in "${RELAY_KINDS[@]}"; do relays+=" $(relay_ticks "$k")"; done
  printf -v "$1" '%s %s %s %s%s' "$(date +%s.%N)" "$busy" "$(pid_ticks "$REG_PID")" "$client" "$relays"
}
# cpu_budget S0 S1 BYTES KIND → "registry_s_per_GiB relay_s_per_GiB client_s_per_GiB others_pct"
# (relay = KIND's relay; 0 for a KIND that is not in RELAY_KINDS, e.g. direct)
cpu_budget() {
  local idx=0 i=0 k
  for k in "${RELAY_KINDS[@]}"; do i=$((i+1)); [ "$k" = "$4" ] && idx=$i; done
  awk -v a="$1" -v b="$2" -v bytes="$3" -v idx="$idx" -v n="$NCPU" -v h="$CLK_TCK" 'BEGIN{
    na=split(a,x," "); split(b,y," "); g=bytes/1073741824; w=y[1]-x[1];
    busy=(y[2]-x[2])/h; reg=(y[3]-x[3])/h; cl=(y[4]-x[4])/h;
    all=0; relay=0;
    for (j=5; j<=na; j++) { d=(y[j]-x[j])/h; all+=d; if (j-4==idx) relay=d }
    oth=busy-reg-cl-all; if (oth<0) oth=0;
    printf "%.2f %.2f %.2f %.0f", reg/g, relay/g, cl/g, (w>0)?100*oth/(w*n):0 }'
}

# ---------------------------------------------------------------- statistics over a TSV of runs
# RESULTS columns: kind dir run mibs seconds bytes reg_s/GiB relay_s/GiB client_s/GiB others%
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
verdict() { awk -v r="$1" -v g="$2" 'BEGIN{ if (r=="-") print "n/a"; else if (r+0 >= g+0) print "met"; else print "**missed**" }'; }
# alternate KINDS RUN: prints the kinds in order for odd runs, reversed for even runs
alternate() {
  local run=$1; shift
  local a=("$@") i
  if [ $((run % 2)) = 1 ]; then printf '%s\n' "${a[@]}"; else for ((i=${#a[@]}-1; i>=0; i--)); do echo "${a[$i]}"; done; fi
}

# ---------------------------------------------------------------- machine facts
machine_facts() {  # sets cpu_model mem_total os fs_type reg_ver reg_pkg curl_ver bin_ver git_rev
  cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
  mem_total=$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)
  os=$( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") || uname -s)
  reg_ver=$(docker-registry --version 2>/dev/null | awk '{print $3}'); reg_pkg=$(dpkg-query -W -f='${Version}' docker-registry 2>/dev/null || true)
  curl_ver=$(curl --version | awk 'NR==1{print $2}')
  bin_ver=$("$BIN" --version 2>/dev/null || echo "?")
  git_rev=$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo "?")
  fs_type=$(df -PT "$WORK" | awk 'NR==2{print $2}')
}

# ---------------------------------------------------------------- optional profile (bench/run with PERF=1)
# profile_proxy NAME CMD…: runs CMD (an extra, untimed transfer) while `perf record -g` samples the proxy
# ($PROXY_PID); writes the top symbols and shared objects to $EXPORT_DIR/perf-NAME{,-dso}.txt (and, with
# PERF_CALL_GRAPH=dwarf, the callers of the top user-space symbol to perf-NAME-callers.txt).
profile_proxy() {
  local name=$1; shift
  [ "${PERF:-0}" = 1 ] && [ -n "${EXPORT_DIR:-}" ] && command -v perf >/dev/null || return 0
  local data=$WORK/perf-$name.data ppid
  perf record -q -e cpu-clock -F 499 -a --call-graph "${PERF_CALL_GRAPH:-fp}" -o "$data" >/dev/null 2>&1 &
  ppid=$!
  sleep 0.3
  "$@" >/dev/null || log "profile $name: the profiled command failed"
  kill -INT "$ppid" 2>/dev/null || true
  wait "$ppid" 2>/dev/null || true
  perf report -q -i "$data" --no-children --pid "$PROXY_PID" --percentage relative --sort symbol --stdio -g none --percent-limit 0.7 2>/dev/null \
    | grep -v '^$' | head -40 > "$EXPORT_DIR/perf-$name.txt" || true
  perf report -q -i "$data" --no-children --pid "$PROXY_PID" --percentage relative --sort dso --stdio -g none 2>/dev/null | grep -v '^$' | head -12 \
    > "$EXPORT_DIR/perf-$name-dso.txt" || true
  # With PERF_CALL_GRAPH=dwarf (libc has no frame pointers, so `fp` chains stop at memcpy): who calls the top
  # user-space symbol, or PERF_CALLERS_OF, 7 frames deep, into perf-NAME-callers.txt.
  local top=""
  if [ "${PERF_CALL_GRAPH:-fp}" = dwarf ]; then
    top=${PERF_CALLERS_OF:-}; [ -n "$top" ] || top=$(grep -m1 '\[\.\]' "$EXPORT_DIR/perf-$name.txt" | awk '{print $3}' || true)
  fi
  if [ -n "$top" ]; then
    perf report -q -i "$data" --no-children --pid "$PROXY_PID" --percentage relative --stdio --symbols "$top" \
      -g caller,1,callee,function,percent --max-stack 7 --percent-limit 1 2>/dev/null | grep -v "^ *|* *$" | cut -c1-220 | head -120 \
      > "$EXPORT_DIR/perf-$name-callers.txt" || true
  fi
  rm -f "$data"
  log "profile $name written to $EXPORT_DIR/perf-$name.txt"
}
