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
cat target/e2e-artifacts/load-report.txt
# The Helm chart rendered by Helm's own library and every manifest in deploy/, checked
# against the Kubernetes schemas; the image's build command is the demo's below.
"${TEST_TOOLS_DIR:-$repo_root/.test-tools}/venv/bin/python" tests/deploy/check_manifests.py

# The README's first command, end to end: the demo must show plaintext to the worker and
# ciphertext on the server.
demo_output="$(DEMO_SERVER_PORT=27233 DEMO_UI_PORT=28233 DEMO_PROXY_LISTEN=127.0.0.1:27333 \
    DEMO_CODEC_LISTEN=127.0.0.1:27334 scripts/demo.sh --once)"
echo "$demo_output"
grep -q 'result: "Hello Ada Lovelace' <<<"$demo_output"
grep -q "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED input: {'encoding': 'binary/encrypted'" <<<"$demo_output"
if grep -q "Ada Lovelace" <<<"$(sed -n '/What the Temporal server stored/,$p' <<<"$demo_output")"; then
    echo "demo: plaintext found in what the server stored" >&2
    exit 1
fi
echo "demo: ok"
