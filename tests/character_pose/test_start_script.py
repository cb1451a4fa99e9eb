"""`bash start.sh` (the service's launcher) brings the API-only server up on 127.0.0.1:7861 with
the service's routes in /docs; a second start while 7861 is taken says so and exits non-zero."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:7861"
FLAGS = ("--skip-prepare-environment", "--skip-load-model-at-start")


def port_taken() -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", 7861)) == 0


def start(data_dir: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(["bash", "start.sh", "--data-dir", str(data_dir), *FLAGS], cwd=ROOT,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def test_start_sh_serves_the_service_on_7861_and_refuses_a_second_start(tmp_path):
    if port_taken():
        pytest.fail("port 7861 is taken by another program; the launcher test needs it free")
    log = tmp_path / "first.log"
    server = start(tmp_path / "data", log)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert server.poll() is None, log.read_text()
            try:
                if requests.get(URL + "/docs", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            pytest.fail(f"no answer on 7861:\n{log.read_text()}")
        paths = requests.get(URL + "/openapi.json", timeout=10).json()["paths"]
        assert "/character-pose/v1/characters" in paths
        assert "/character-pose/v1/characters/{character_id}/pose" in paths
        assert "/sdapi/v1/txt2img" in paths
        second = subprocess.run(["bash", "start.sh", "--data-dir", str(tmp_path / "other"),
                                 *FLAGS], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert "Port 7861 on 127.0.0.1 is already in use" in second.stdout + second.stderr
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
