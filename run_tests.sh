#!/usr/bin/env bash
# Sets up ./venv from the pinned requirements (first run, or when they change) and runs the tests.
# Extra arguments go to pytest, e.g. ./run_tests.sh tests/engine -x
set -euo pipefail
cd "$(dirname "$0")"

python_cmd="${python_cmd:-}"
if [ -z "$python_cmd" ]; then
    if command -v python3.11 >/dev/null 2>&1; then python_cmd=python3.11; else python_cmd=python3; fi
fi
[ -x venv/bin/python ] || "$python_cmd" -m venv venv

stamp=venv/.requirements-test.sha256
wanted=$(cat requirements.txt requirements-test.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    venv/bin/python -m pip install --upgrade pip >/dev/null
    venv/bin/python -m pip install -r requirements-test.txt
    echo "$wanted" > "$stamp"
fi

# The browser tests (tests/browser) drive Debian's chromium through Playwright; the queue tests
# (tests/jobs) start their own redis-server on a loopback port and stop it afterwards.
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
missing=()
[ -x "$chromium" ] || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "Installing Debian's ${missing[*]} for the browser and queue tests..."
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" \
            || echo "Could not install ${missing[*]}: the tests that need them will be skipped." >&2
    else
        echo "Some tests need ${missing[*]} and will be skipped: install with" \
             "'sudo apt-get install -y ${missing[*]}' (Debian/Ubuntu); CHROMIUM_PATH names" \
             "another Chromium." >&2
    fi
fi

set +e
venv/bin/python -m pytest tests -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing on purpose" >&2
    exit 1
fi
exit "$rc"
