#!/usr/bin/env bash
# Builds the release binary; the container image and the test suite both build through this script so they ship the same thing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --locked --bin temporal-codec-proxy
