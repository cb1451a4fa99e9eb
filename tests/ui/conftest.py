"""Application contexts over temporary data folders for the UI tests."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from modules.app.cmd_args import parse_args
from modules.app.context import AppContext, build_app_context
from tests.engine.tiny_checkpoints import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def app_context(data_dir: Path, *, tiny_checkpoint: bool = False,
                extra_args: Sequence[str] = ()) -> Iterator[AppContext]:
    """A real AppContext over `data_dir`, optionally with models/Stable-diffusion/tiny-sd1, and
    more command-line flags."""
    if tiny_checkpoint:
        ckpt_dir = data_dir / "models" / "Stable-diffusion"
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        write_tiny_checkpoint(ckpt_dir / "tiny-sd1.safetensors", "sd1", seed=1)
    args, _ = parse_args(["--data-dir", str(data_dir), "--skip-load-model-at-start",
                          *extra_args])
    context = build_app_context(args, ROOT)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Iterator[AppContext]:
    """No checkpoint: enough for building tabs and running non-model handlers."""
    with app_context(tmp_path_factory.mktemp("data")) as context:
        yield context


@pytest.fixture(scope="module")
def tiny_ctx(tmp_path_factory) -> Iterator[AppContext]:
    with app_context(tmp_path_factory.mktemp("data"), tiny_checkpoint=True) as context:
        yield context
