#!/usr/bin/env bash
#########################################################
# Uncomment and change the variables below to your need #
#########################################################

# Command-line arguments for launch.py, e.g. COMMANDLINE_ARGS="--api --listen"
#export COMMANDLINE_ARGS=""

# Python used to create the venv (default: python3.11, else python3)
#python_cmd="python3.11"

# Folder of the virtual environment (default: venv next to this file; "-" = use python_cmd as is)
#venv_dir="venv"
