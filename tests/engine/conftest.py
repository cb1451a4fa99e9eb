"""Session-wide tiny checkpoint files (written once, on first use) for the engine tests."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.engine.tiny_checkpoints import write_tiny_checkpoint, write_tiny_vae


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`tiny_checkpoint(kind)` -> path of a tiny `.safetensors` checkpoint of that kind (seed 0,
    with the optional non-weight keys). Files are shared by the whole session: do not modify."""
    directory = tmp_path_factory.mktemp("tiny_checkpoints")
    written: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in written:
            written[kind] = write_tiny_checkpoint(directory / f"tiny-{kind}.safetensors", kind)
        return written[kind]

    return get


@pytest.fixture(scope="session")
def tiny_vae_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A standalone tiny VAE file matching the tiny SD1/SD2 checkpoints' VAE (seed 1)."""
    return write_tiny_vae(tmp_path_factory.mktemp("tiny_vae") / "tiny-vae.safetensors", seed=1)
