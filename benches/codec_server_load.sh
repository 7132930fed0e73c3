#!/usr/bin/env bash
# Load test of the codec server's /decode with wrk: requests per second and p50/p99 latency
# for 1 and 100 payloads of 1 KiB, at 16 and 64 connections, against the release build.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
duration="${BENCH_DURATION:-10s}"
work="$(mktemp -d)"
proxy_pid=""
cleanup() {
    [[ -n "$proxy_pid" ]] && kill "$proxy_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet
proxy="$repo_root/target/release/temporal-codec-proxy"
codec_port="${BENCH_CODEC_PORT:-28081}"
"$proxy" serve --listen 127.0.0.1:0 --upstream 127.0.0.1:1 --codec-listen "127.0.0.1:$codec_port" --admin-listen 127.0.0.1:0 \
    --key "bench=$("$proxy" keygen)" --log warn &
proxy_pid=$!
for _ in $(seq 1 50); do
    curl -s -o /dev/null "http://127.0.0.1:$codec_port/decode" && break
    sleep 0.1
done

# Bodies: N json/plain payloads of 1 KiB, encrypted through /encode.
for count in 1 100; do
    python3 - "$count" >"$work/plain-$count.json" <<'PY'
import base64, json, sys
data = base64.b64encode(b'"' + b"x" * 1022 + b'"').decode()
encoding = base64.b64encode(b"json/plain").decode()
count = int(sys.argv[1])
print(json.dumps({"payloads": [{"metadata": {"encoding": encoding}, "data": data}] * count}))
PY
    curl -sf -X POST -H 'content-type: application/json' --data-binary "@$work/plain-$count.json" \
        "http://127.0.0.1:$codec_port/encode" >"$work/encrypted-$count.json"
done

cat >"$work/post.lua" <<'LUA'
local file = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Namespace"] = "default"
LUA

printf '%-10s %-12s %12s %10s %10s %8s\n' payloads connections requests/s p50 p99 errors
for count in 1 100; do
    for connections in 16 64; do
        output="$(BENCH_BODY="$work/encrypted-$count.json" wrk -t2 -c"$connections" -d"$duration" --latency \
            -s "$work/post.lua" "http://127.0.0.1:$codec_port/decode?preserveStorageRefs=true")"
        rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$output")"
        p50="$(awk '$1 == "50%" {print $2}' <<<"$output")"
        p99="$(awk '$1 == "99%" {print $2}' <<<"$output")"
        errors="$(awk '/Non-2xx/ {print $5}' <<<"$output")"
        printf '%-10s %-12s %12s %10s %10s %8s\n' "$count x 1KiB" "$connections" "$rps" "$p50" "$p99" "${errors:-0}"
    done
done
echo "(wrk -t2 -d$duration --latency, POST /decode?preserveStorageRefs=true, release build, loopback)"
