#!/usr/bin/env bash
# Builds the connectors container image from scratch, with no base image to pull: the release binary, the shared
# libraries it links (glibc's, copied from this machine), a CA bundle, /etc/passwd with user 65532 (the image's
# user), /tmp, and OCI labels (source, version, revision). Assembled with buildah in a private storage folder.
#
#   scripts/build-image.sh [--tag NAME] [--oci DIR] [--push REF] [--docker-archive] [--binary PATH]
#
#   --tag NAME        the image name (default connectors:dev)
#   --oci DIR         write the image as an OCI layout into DIR (default: target/image/oci-layout in the repo,
#                     or $CARGO_TARGET_DIR/image/oci-layout)
#   --push REF        also push it, e.g. --push docker://registry.example:5000/connectors:0.1.0 (buildah push; add
#                     registry options with BUILDAH_PUSH_FLAGS, e.g. "--creds user:pass --tls-verify=true")
#   --docker-archive  also write a docker-archive tar next to the OCI layout (for `ctr images import`) and print
#                     its path on stdout (scripts/cluster.sh up --node uses this)
#   --binary PATH     put this binary in instead of building one (`cargo build --release -p connectors`)
#
# The CSI driver runs as root (privileged, it mounts tmpfs); deploy/csi.yaml says so with runAsUser: 0.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
TAG=connectors:dev
TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
OCI_DIR="$TARGET_DIR/image/oci-layout"
PUSH="" ARCHIVE=0 BINARY=""
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) TAG="$2"; shift 2 ;;
        --oci) OCI_DIR="$2"; shift 2 ;;
        --push) PUSH="$2"; shift 2 ;;
        --docker-archive) ARCHIVE=1; shift ;;
        --binary) BINARY="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build-image: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
log() { echo "build-image: $*" >&2; }
command -v buildah >/dev/null || { log "buildah is missing: apt-get install buildah"; exit 1; }

if [ -z "$BINARY" ]; then
    log "cargo build --release -p connectors"
    (cd "$root" && cargo build --release --locked -q -p connectors --bin connectors >&2)
    BINARY="$TARGET_DIR/release/connectors"
fi
[ -x "$BINARY" ] || { log "no executable at $BINARY"; exit 1; }

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then revision="$revision-dirty"; fi
source_url="$(git -C "$root" remote get-url origin 2>/dev/null || echo "file://$root")"

work="$(mktemp -d "${TMPDIR:-/tmp}/connectors-image.XXXXXX")"
trap 'buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs rm -a >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
bah() { buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"; }

# The file tree: binary, its libraries and the loader (as ldd names them), CA bundle, passwd/group, /tmp.
tree="$work/tree"
mkdir -p "$tree/usr/local/bin" "$tree/etc/ssl/certs" "$tree/tmp"
chmod 1777 "$tree/tmp"
install -m 0755 "$BINARY" "$tree/usr/local/bin/connectors"
strip --strip-debug "$tree/usr/local/bin/connectors"   # the release profile keeps debug info for profiling
# (The CSI driver mounts through syscalls: no mount(8) needed.)
ldd "$BINARY" | awk '/=> \//{print $3} /^[[:space:]]*\/[^ ]+/{print $1}' | while read -r lib; do
    mkdir -p "$tree$(dirname "$lib")"
    cp -L "$lib" "$tree$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$tree/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$tree/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$tree/etc/group"
mkdir -p "$tree/home/nonroot" && chown 65532:65532 "$tree/home/nonroot"

c="$(bah from scratch)"
bah copy "$c" "$tree/" / >/dev/null
bah config --user 65532:65532 --workingdir /home/nonroot \
    --env PATH=/usr/local/bin:/usr/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --entrypoint '["connectors"]' --cmd '["--help"]' \
    --label "org.opencontainers.image.title=connectors" \
    --label "org.opencontainers.image.source=$source_url" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.licenses=$(sed -n 's/^license = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)" \
    "$c"
bah commit -q "$c" "$TAG" >/dev/null
rm -rf "$OCI_DIR" && mkdir -p "$(dirname "$OCI_DIR")"
bah push -q "$TAG" "oci:$OCI_DIR:$TAG"
log "OCI layout: $OCI_DIR ($TAG, revision $revision, $(du -sh "$OCI_DIR" | cut -f1))"
if [ -n "$PUSH" ]; then
    # shellcheck disable=SC2086
    bah push -q ${BUILDAH_PUSH_FLAGS:-} "$TAG" "$PUSH"
    log "pushed to $PUSH"
fi
if [ "$ARCHIVE" = 1 ]; then
    archive="$(dirname "$OCI_DIR")/$(echo "$TAG" | tr '/:' '__').tar"
    rm -f "$archive"
    bah push -q "$TAG" "docker-archive:$archive:$TAG"
    echo "$archive"
fi
