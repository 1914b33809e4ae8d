#!/usr/bin/env bash
# Installs the system packages the demo and the end-to-end tests use (registry, htpasswd, skopeo, buildah,
# podman, curl, runc; for the node tier CNI plugins, iptables, socat, mmdebstrap, gcc) (Debian/Ubuntu, as root or
# via sudo), and grpcio for python3 (PyPI).
# Idempotent: does nothing when everything is present.
set -euo pipefail

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v skopeo >/dev/null || need+=(skopeo)
command -v curl >/dev/null || need+=(curl)
command -v buildah >/dev/null || need+=(buildah)
command -v podman >/dev/null || need+=(podman)
command -v unshare >/dev/null || need+=(util-linux)
# scripts/cluster.sh makes the test cluster's certificates with openssl.
command -v openssl >/dev/null || need+=(openssl)
# buildkitd's OCI worker (the client tier, scripts/test.sh --all) refuses to start without runc.
command -v runc >/dev/null || need+=(runc)
# The node tier (scripts/cluster.sh up --node): CNI plugins, iptables for kube-proxy, socat (the API server's
# forward for pods), mmdebstrap (the tools image from Debian packages), gcc (the pause image, static).
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
command -v socat >/dev/null || need+=(socat)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v gcc >/dev/null || need+=(gcc)
# libfuzzer-sys (fuzz/) compiles libFuzzer, which is C++.
command -v c++ >/dev/null || need+=(g++)

# crates/csi/tests/grpc.rs calls the CSI driver with grpc-python, which sends the socket path as :authority from
# grpcio 1.57 on (the case it tests); Debian's python3-grpcio is older, so grpcio comes from PyPI with pip.
grpcio_ok() {
  python3 -c 'import grpc, sys; sys.exit(tuple(map(int, grpc.__version__.split(".")[:2])) < (1, 57))' 2>/dev/null
}
install_grpcio() {
  grpcio_ok && return 0
  echo "install-deps: installing grpcio (PyPI) for python3" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'grpcio>=1.57' 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'grpcio>=1.57'
}
grpcio_ok || python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)

if [ ${#need[@]} -eq 0 ]; then
  install_grpcio
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${need[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${need[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
install_grpcio
