#!/usr/bin/env bash
# Starts a local Temporal dev server, the proxy in front of it with a generated dev key,
# runs a sample workflow through the proxy, and shows what the worker saw next to what
# the server stored. Keeps both running until Ctrl-C (or exits at once with --once).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
once=false
[[ "${1:-}" == "--once" ]] && once=true

server_port="${DEMO_SERVER_PORT:-17233}"
ui_port="${DEMO_UI_PORT:-8233}"
proxy_listen="${DEMO_PROXY_LISTEN:-127.0.0.1:7233}"
codec_listen="${DEMO_CODEC_LISTEN:-127.0.0.1:8081}"
state_dir="$repo_root/.demo"
mkdir -p "$state_dir"

scripts/install-test-tools.sh --python-only >/dev/null
venv="${TEST_TOOLS_DIR:-$repo_root/.test-tools}/venv"

echo "==> building temporal-codec-proxy (release)"
scripts/build-release.sh
proxy_bin="$repo_root/target/release/temporal-codec-proxy"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "==> starting Temporal dev server on 127.0.0.1:$server_port (Web UI on http://127.0.0.1:$ui_port)"
"$venv/bin/temporal" server start-dev --ip 127.0.0.1 --port "$server_port" --ui-port "$ui_port" \
    --ui-codec-endpoint "http://$codec_listen" --http-port $((server_port + 1)) --metrics-port $((server_port + 2)) --db-filename '' \
    --log-level warn >"$state_dir/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    "$venv/bin/temporal" operator cluster health --address "127.0.0.1:$server_port" >/dev/null 2>&1 && break
    sleep 0.3
done

key_file="$state_dir/dev.key"
if [[ ! -f "$key_file" ]]; then
    (umask 077 && "$proxy_bin" keygen >"$key_file")
    echo "==> generated a dev key in $key_file"
fi

echo "==> starting the proxy on $proxy_listen -> 127.0.0.1:$server_port (codec server on http://$codec_listen)"
"$proxy_bin" serve --listen "$proxy_listen" --upstream "127.0.0.1:$server_port" \
    --key "dev=file:$key_file" --codec-listen "$codec_listen" \
    --codec-cors-origin "http://localhost:$ui_port" --codec-cors-origin "http://127.0.0.1:$ui_port" \
    >"$state_dir/proxy.log" 2>&1 &
proxy_pid=$!
pids+=("$proxy_pid")
until grep -q "serving the codec-server API" "$state_dir/proxy.log" 2>/dev/null; do
    if ! kill -0 "$proxy_pid" 2>/dev/null; then
        echo "the proxy did not start:" >&2
        cat "$state_dir/proxy.log" >&2
        exit 1
    fi
    sleep 0.1
done

echo "==> running a workflow through the proxy"
run="$("$venv/bin/python" scripts/demo_workflow.py --address "$proxy_listen")"
workflow_id="$("$venv/bin/python" -c 'import json,sys; print(json.loads(sys.argv[1])["workflow_id"])' "$run")"

echo
echo "What the worker and client saw (through the proxy):"
"$venv/bin/python" -c 'import json,sys; d=json.loads(sys.argv[1]); print("  input: ", json.dumps(d["input"])); print("  result:", json.dumps(d["result"]))' "$run"
echo
echo "What the Temporal server stored (read directly, not through the proxy):"
"$venv/bin/temporal" workflow show --workflow-id "$workflow_id" --address "127.0.0.1:$server_port" --output json |
    "$venv/bin/python" scripts/show_stored_payloads.py
echo
if $once; then
    exit 0
fi
echo "Point workers at $proxy_listen (TEMPORAL_ADDRESS=$proxy_listen)."
echo "Web UI, decoding through the proxy's codec server: http://localhost:$ui_port/namespaces/default/workflows/$workflow_id"
echo "Logs in $state_dir. Press Ctrl-C to stop."
wait
