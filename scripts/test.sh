#!/usr/bin/env bash
# Runs the whole test suite: installs the test tools, checks formatting and lints, then
# runs the unit tests and the end-to-end tests against a real Temporal dev server.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

scripts/install-test-tools.sh
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo nextest run --lib --bins
# The end-to-end tests share one Temporal dev server per test binary, so they run as
# threads of one process rather than one process per test.
cargo test --test e2e -- --test-threads 4
