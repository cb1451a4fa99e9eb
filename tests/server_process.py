"""The real app as a user starts it (`launch.py`, real uvicorn) in a child process, for the tests
that talk to it over HTTP or read its memory from the outside."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

ROOT = Path(__file__).resolve().parents[1]
SERVER_START_SECONDS = 180


@dataclass
class AppServer:
    """A running `launch.py` process and where to reach it."""
    base_url: str
    data_dir: Path
    process: subprocess.Popen
    log_path: Path
    log_file: IO[str] = field(repr=False)

    def log_text(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app_server(data_dir: Path, *, args: tuple[str, ...] = ("--api",),
                     extra_args: tuple[str, ...] = (),
                     start_seconds: float = SERVER_START_SECONDS) -> AppServer:
    """Start `launch.py --data-dir DATA --port FREE <args> <extra_args>` and wait until
    /internal/ping answers (any HTTP answer: with --api-auth it is a 401). `args` defaults to the
    UI with the API; pass ("--nowebui",) for the API-only server."""
    port = free_port()
    log_path = data_dir / "server.log"
    log_file = open(log_path, "w", encoding="utf-8")
    # Gradio's uploaded / generated files go under the data dir, so nothing outlives the run
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_TEMP_DIR": str(data_dir / "gradio-tmp"),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen(
        [sys.executable, "launch.py", "--data-dir", str(data_dir), "--port", str(port),
         "--skip-prepare-environment", *args, *extra_args],
        cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    server = AppServer(f"http://127.0.0.1:{port}", data_dir, process, log_path, log_file)
    deadline = time.monotonic() + start_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log_file.close()
            raise RuntimeError(f"the app exited with {process.returncode}:\n{server.log_text()}")
        try:
            requests.get(server.base_url + "/internal/ping", timeout=2)
            return server
        except requests.ConnectionError:
            time.sleep(0.3)
    stop_app_server(server)
    raise RuntimeError(f"the app did not answer within {start_seconds}s:\n{server.log_text()}")


def stop_app_server(server: AppServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=20)
    server.log_file.close()
