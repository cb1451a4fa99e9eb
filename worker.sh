#!/usr/bin/env bash
# A generation worker for a front started with --queue (README "Several machines"):
#   ./worker.sh --queue redis://HOST:6379/0 [model and device flags, e.g. --ckpt FILE]
# Sets up like webui.sh, then takes jobs from the queue until stopped (Ctrl+C / SIGTERM).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
exec ./webui.sh --worker "$@"
