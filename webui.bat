@echo off
rem Creates venv on the first run, installs requirements.txt when it changed since the last
rem install, then runs launch.py with COMMANDLINE_ARGS (from webui-user.bat) and this script's args.
setlocal
cd /d "%~dp0"

set WEBUI_LAUNCHING=1
if exist webui-user.bat call webui-user.bat

if not defined PYTHON (
    where py >nul 2>nul && (set "PYTHON=py -3.11") || (set "PYTHON=python")
)
if not defined VENV_DIR set "VENV_DIR=%~dp0venv"

set SKIP_INSTALL=0
for %%a in (%COMMANDLINE_ARGS% %*) do (
    if "%%~a"=="--skip-install" set SKIP_INSTALL=1
    if "%%~a"=="--skip-prepare-environment" set SKIP_INSTALL=1
)

if "%VENV_DIR%"=="-" (
    set "PY=%PYTHON%"
    goto :launch
)
if not exist "%VENV_DIR%\Scripts\python.exe" (
    echo Creating the virtual environment in %VENV_DIR% with %PYTHON%
    %PYTHON% -m venv "%VENV_DIR%" || goto :error
)
set PY="%VENV_DIR%\Scripts\python.exe"
if "%SKIP_INSTALL%"=="1" goto :launch

rem certutil prints a title line, the hash, and a status line: keep the line without ":"
set "WANTED="
for /f "tokens=* delims=" %%h in ('certutil -hashfile requirements.txt SHA256 ^| findstr /v ":"') do (
    if not defined WANTED set "WANTED=%%h"
)
set "WANTED=%WANTED: =%"
set "STAMP=%VENV_DIR%\.requirements.sha256"
set "HAVE="
if exist "%STAMP%" set /p HAVE=<"%STAMP%"
if not "%HAVE%"=="%WANTED%" (
    echo Installing requirements.txt into %VENV_DIR%
    %PY% -m pip install --upgrade pip || goto :error
    %PY% -m pip install -r requirements.txt || goto :error
    >"%STAMP%" echo %WANTED%
)

:launch
%PY% launch.py %COMMANDLINE_ARGS% %*
exit /b %ERRORLEVEL%

:error
echo Setup failed: see the messages above.
exit /b 1
