#!/usr/bin/env bash
# The main job, end to end on one machine: a password-protected registry, the Connectors proxy, and a
# workload (skopeo) that pushes and pulls an image through the proxy holding only a proxy token.
#
#   scripts/demo.sh            # installs docker-registry, skopeo, htpasswd if missing (apt), builds, runs
#
# Everything listens on 127.0.0.1 and is stopped when the script exits.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "1. Install what the demo needs (docker-registry, skopeo, htpasswd, curl) if missing"
scripts/install-deps.sh

step "2. Build the connectors binary"
cargo build --quiet --locked -p connectors
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/connectors"
"$BIN" --version

WORK=$(mktemp -d /tmp/connectors-demo.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
}

step "3. Start a registry that wants a password (htpasswd, bcrypt)"
REG_PORT=$(free_port)
REG_USER=demo
REG_PASS="demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mkdir -p "$WORK/registry"
htpasswd -Bbn "$REG_USER" "$REG_PASS" > "$WORK/registry/htpasswd"
cat > "$WORK/registry/config.yml" <<YAML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $WORK/registry/data}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$REG_PORT, secret: demo-only}
auth:
  htpasswd: {realm: demo, path: $WORK/registry/htpasswd}
YAML
docker-registry serve "$WORK/registry/config.yml" > "$WORK/registry/log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$REG_PORT/v2/" && break; sleep 0.05; done
echo "registry on 127.0.0.1:$REG_PORT; without credentials it answers: $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$REG_PORT/v2/)"

step "4. Describe the registry as a Connector (the password lives only in this Secret)"
cat > "$WORK/catalog.yaml" <<YAML
apiVersion: v1
kind: Secret
metadata: {name: registry-auth, namespace: demo}
type: cpaas.io/distribution-registry-token
stringData:
  username: $REG_USER
  password: $REG_PASS
---
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {name: registry, namespace: demo}
spec:
  connectorClassName: oci
  address: http://127.0.0.1:$REG_PORT
  auth:
    name: tokenAuth
    secretRef: {name: registry-auth}
YAML
sed "s/password: .*/password: <hidden>/" "$WORK/catalog.yaml"

step "5. Check the connector: is the registry reachable, are the credentials accepted?"
"$BIN" check --catalog "$WORK/catalog.yaml" demo/registry

step "6. Start the proxy"
CONNECTORS_LOG=info "$BIN" up --catalog "$WORK/catalog.yaml" --state-dir "$WORK/state" --listen 127.0.0.1:0 \
  > "$WORK/proxy.out" 2> "$WORK/proxy.log" &
PIDS+=($!)
for _ in $(seq 200); do grep -q '^listening on ' "$WORK/proxy.out" 2>/dev/null && break; sleep 0.05; done
cat "$WORK/proxy.out"
PROXY=$(sed -n 's/^listening on //p' "$WORK/proxy.out")

step "7. Issue a proxy token for the workload (30 minutes, this connector only)"
TOKEN=$("$BIN" token issue --state-dir "$WORK/state" --connectors demo/registry --ttl 30m --subject demo-workload)
echo "token: ${TOKEN:0:24}… (${#TOKEN} characters)"
mkdir -p "$WORK/client"
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$PROXY" "$(printf 'workload:%s' "$TOKEN" | base64 -w0)" > "$WORK/client/auth.json"
echo "the workload's auth.json names only the proxy and the token:"
sed 's/"auth":"[^"]*"/"auth":"<workload:token>"/' "$WORK/client/auth.json"

step "8. Build a small image locally (OCI layout, no network)"
IMG="$WORK/image"
mkdir -p "$IMG/blobs/sha256" "$WORK/rootfs"
echo "hello from connectors" > "$WORK/rootfs/hello.txt"
tar -C "$WORK/rootfs" -cf "$WORK/layer.tar" hello.txt
LAYER=$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1); LAYER_SIZE=$(stat -c %s "$WORK/layer.tar")
cp "$WORK/layer.tar" "$IMG/blobs/sha256/$LAYER"
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/hello.txt"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$LAYER" > "$WORK/config.json"
CONFIG=$(sha256sum "$WORK/config.json" | cut -d' ' -f1); CONFIG_SIZE=$(stat -c %s "$WORK/config.json")
cp "$WORK/config.json" "$IMG/blobs/sha256/$CONFIG"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
  "$CONFIG" "$CONFIG_SIZE" "$LAYER" "$LAYER_SIZE" > "$WORK/manifest.json"
MANIFEST=$(sha256sum "$WORK/manifest.json" | cut -d' ' -f1); MANIFEST_SIZE=$(stat -c %s "$WORK/manifest.json")
cp "$WORK/manifest.json" "$IMG/blobs/sha256/$MANIFEST"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
  "$MANIFEST" "$MANIFEST_SIZE" > "$IMG/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$IMG/oci-layout"
echo "image sha256:$MANIFEST"

# skopeo with its own config and blob-info cache, and no proxy variables
export HOME="$WORK/client" REGISTRY_AUTH_FILE="$WORK/client/auth.json"
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy
REF="$PROXY/namespaces/demo/connectors/registry/team/hello"

step "9. Push through the proxy: skopeo copy oci:… docker://$REF:v1"
skopeo copy --preserve-digests --dest-tls-verify=false "oci:$IMG:v1" "docker://$REF:v1"

step "10. Pull it back through the proxy"
skopeo copy --src-tls-verify=false "docker://$REF:v1" "dir:$WORK/pulled"
PULLED=$(sha256sum "$WORK/pulled/manifest.json" | cut -d' ' -f1)
echo "pushed sha256:$MANIFEST"
echo "pulled sha256:$PULLED"
[ "$PULLED" = "$MANIFEST" ] || { echo "digest mismatch" >&2; exit 1; }
echo "layer content: $(tar -xOf "$WORK/pulled/$LAYER" hello.txt)"

step "11. The registry really has it (asked directly, with the real credentials)"
curl -s -u "$REG_USER:$REG_PASS" "http://127.0.0.1:$REG_PORT/v2/team/hello/tags/list"; echo

step "12. What the proxy logged (one line per request; no credential in it)"
grep 'connectors::access' "$WORK/proxy.log" | tail -n 6
if grep -q -- "$REG_PASS" "$WORK/proxy.log"; then echo "the password leaked into the proxy log" >&2; exit 1; fi
echo "the registry password appears 0 times in the proxy log"

step "Done: the workload pushed and pulled with a proxy token only."
