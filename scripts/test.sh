#!/usr/bin/env bash
# Runs every test: unit, component and end to end (real docker-registry and skopeo on loopback).
# Installs the system packages the end-to-end tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace --locked "$@"
