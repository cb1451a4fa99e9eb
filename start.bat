@echo off
rem The character-pose service: the API only, on 127.0.0.1:7861 (Swagger UI at /docs).
rem Same venv setup as webui.bat; extra arguments are passed on.
call "%~dp0webui.bat" --nowebui --api --port 7861 %*
