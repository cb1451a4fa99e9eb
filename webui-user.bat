@echo off
rem Settings for webui.bat. Run this file (or webui.bat) to start the web UI.

rem Python used to create the venv (default: "py -3.11" when the launcher exists, else python)
set PYTHON=
rem Folder of the virtual environment (default: venv next to webui.bat; "-" = use PYTHON as is)
set VENV_DIR=
rem Command-line arguments for launch.py, e.g. --api --listen
set COMMANDLINE_ARGS=

rem webui.bat calls this file to read the settings; started directly, it starts webui.bat
if not defined WEBUI_LAUNCHING call "%~dp0webui.bat" %*
