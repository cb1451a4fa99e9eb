#!/usr/bin/env bash
# Creates ./venv on the first run, installs requirements.txt when it changed since the last
# install, then runs launch.py with COMMANDLINE_ARGS (from webui-user.sh) and this script's args.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [[ -f webui-user.sh ]]; then
    # shellcheck source=webui-user.sh
    source ./webui-user.sh
fi

if [[ -z "${python_cmd:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then python_cmd="python3.11"; else python_cmd="python3"; fi
fi
venv_dir="${venv_dir:-venv}"
read -r -a commandline_args <<< "${COMMANDLINE_ARGS:-}"
# ${a[@]+"${a[@]}"}: empty arrays are "unbound" for set -u in bash 3 (macOS)
all_args=(${commandline_args[@]+"${commandline_args[@]}"} "$@")

skip_install=0
for arg in ${all_args[@]+"${all_args[@]}"}; do
    case "$arg" in
        --skip-install|--skip-prepare-environment) skip_install=1 ;;
    esac
done

if [[ "$venv_dir" == "-" ]]; then
    python="$python_cmd"
else
    if [[ ! -x "$venv_dir/bin/python" ]]; then
        echo "Creating the virtual environment in $venv_dir with $python_cmd"
        "$python_cmd" -m venv "$venv_dir"
    fi
    python="$venv_dir/bin/python"
fi

if [[ "$skip_install" -eq 0 && "$venv_dir" != "-" ]]; then
    stamp="$venv_dir/.requirements.sha256"
    if command -v sha256sum >/dev/null 2>&1; then
        wanted="$(sha256sum requirements.txt | cut -d' ' -f1)"
    else
        wanted="$(shasum -a 256 requirements.txt | cut -d' ' -f1)"
    fi
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
        echo "Installing requirements.txt into $venv_dir"
        "$python" -m pip install --upgrade pip
        "$python" -m pip install -r requirements.txt
        echo "$wanted" > "$stamp"
    fi
fi

exec "$python" launch.py ${all_args[@]+"${all_args[@]}"}
