#!/usr/bin/env bash
# The character-pose service: the API only, on 127.0.0.1:7861 (Swagger UI at /docs).
# Same venv setup as webui.sh; extra arguments are passed on.
exec "$(dirname "${BASH_SOURCE[0]}")/webui.sh" --nowebui --api --port 7861 "$@"
