"""Switching between two full-size SD1.5 checkpoints through the API of a real server: memory does
not grow with the number of switches, and a switch never holds two models at once.

The checkpoints are sparse files in the real key format (`tests/ref_models.py`), 4.3 GB of fp32
weights each, so a leaked or doubled model shows in the server's resident memory. The server's
peak is read from the kernel (VmHWM, reset through /proc/<pid>/clear_refs before each switch).
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests

from tests.ref_models import write_sparse_checkpoint
from tests.server_process import start_app_server, stop_app_server

pytestmark = pytest.mark.slow

SWITCHES = 10
GIB = 1024 ** 3


def _status_kib(pid: int, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match, f"no {field} in /proc/{pid}/status"
    return int(match.group(1))


def rss_bytes(pid: int) -> int:
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    return _status_kib(pid, "VmHWM") * 1024


def reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@pytest.fixture(scope="module")
def two_model_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("switch-memory")
    ckpt_dir = data / "models" / "Stable-diffusion"
    write_sparse_checkpoint("sd15", ckpt_dir / "full-sd15.safetensors")
    write_sparse_checkpoint("sd15_inpaint", ckpt_dir / "full-sd15-inpaint.safetensors")
    # float32 (4.3 GB a model), whatever the CPU: the figures below are for that size
    server = start_app_server(data, args=("--nowebui", "--skip-load-model-at-start",
                                          "--no-hashing", "--cpu-precision", "fp32"))
    yield server
    stop_app_server(server)


def switch_to(server, title: str) -> None:
    answer = requests.post(server.base_url + "/sdapi/v1/options",
                           json={"sd_model_checkpoint": title}, timeout=600)
    assert answer.status_code == 200, answer.text
    loaded = requests.get(server.base_url + "/sdapi/v1/options", timeout=30).json()
    assert loaded["sd_model_checkpoint"].startswith(title), loaded["sd_model_checkpoint"]


def test_switching_ten_times_keeps_one_model_in_memory(two_model_server):
    server = two_model_server
    pid = server.process.pid
    base = rss_bytes(pid)
    names = ["full-sd15.safetensors", "full-sd15-inpaint.safetensors"]

    started = time.monotonic()
    switch_to(server, names[0])
    one_model = rss_bytes(pid) - base
    assert one_model > 4 * GIB, f"a full SD1.5 should take > 4 GiB, took {one_model / GIB:.2f}"

    after: list[int] = []
    peaks: list[int] = []
    for index in range(SWITCHES):
        reset_peak_rss(pid)
        switch_to(server, names[(index + 1) % 2])
        peaks.append(peak_rss_bytes(pid))
        after.append(rss_bytes(pid))
        # a leaked model shows at once; stop before a third copy makes the kernel kill the server
        assert after[-1] - after[0] < one_model / 2, \
            f"switch {index + 1} left {(after[-1] - after[0]) / GIB:.2f} GiB more than switch 1"
    report = (f"base {base / GIB:.2f} GiB, one model {one_model / GIB:.2f} GiB, RSS after each "
              f"switch {[round(value / GIB, 2) for value in after]}, peaks "
              f"{[round(value / GIB, 2) for value in peaks]} ({time.monotonic() - started:.0f} s)")
    print(report)
    assert after[-1] <= after[0] * 1.05, f"memory grows with switches: {report}"
    worst_peak = max(peaks) - base
    assert worst_peak <= 1.3 * one_model, f"a switch held more than one model: {report}"
