"""A checkpoint folder of tiny random-weight checkpoints (real key names) and a merger over it."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from safetensors.torch import load_file

from modules.app.checkpoints import CheckpointRegistry, HashCache, VaeRegistry
from modules.merger.service import CheckpointMerger
from tests.engine.tiny_checkpoints import write_tiny_checkpoint


def make_merger(data: Path) -> CheckpointMerger:
    ckpt_dir = data / "models" / "Stable-diffusion"
    checkpoints = CheckpointRegistry(ckpt_dir, hash_cache=HashCache(data / "cache.json"))
    checkpoints.refresh()
    vaes = VaeRegistry(data / "models" / "VAE", extra_dirs=[ckpt_dir])
    vaes.refresh()
    return CheckpointMerger(checkpoints, vaes, ckpt_dir)


@pytest.fixture
def models(tmp_path):
    """write(name, kind, seed) adds a checkpoint; merger() scans the folder."""
    data = tmp_path / "data"
    ckpt_dir = data / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)

    def write(name: str, kind: str = "sd1", seed: int = 0, **kwargs) -> Path:
        return write_tiny_checkpoint(ckpt_dir / name, kind, seed=seed, **kwargs)

    return SimpleNamespace(data=data, dir=ckpt_dir, write=write,
                           merger=lambda: make_merger(data), load=lambda p: load_file(str(p)))


def merged_keys(a: dict, b: dict) -> list[str]:
    """The keys A1111 interpolates: float, named "...model...", in both, not CLIP position ids."""
    return [key for key, value in a.items()
            if "model" in key and key in b and value.is_floating_point()
            and not key.endswith("position_ids")]
