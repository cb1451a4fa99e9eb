"""Checkpoint reading (safetensors, safe pickles, corrupt files) and A1111's file hashes."""
from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.engine.checkpoint_io import (
    CheckpointLoadError, addnet_hash_safetensors, legacy_model_hash, read_checkpoint_header,
    read_safetensors_metadata,
    read_state_dict, sha256_file,
)


def _sample_tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return {"a.weight": torch.randn(4, 3, generator=generator),
            "b.bias": torch.arange(5, dtype=torch.float16),
            "c.index": torch.arange(7)}


def _assert_same_tensors(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(expected)
    for key, tensor in expected.items():
        assert got[key].dtype == tensor.dtype
        assert torch.equal(got[key], tensor), key


def test_safetensors_round_trip_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    tensors = _sample_tensors()
    save_file(tensors, str(path), metadata={"modelspec.title": "tiny", "ss_network_dim": "4"})
    _assert_same_tensors(read_state_dict(path), tensors)
    assert read_safetensors_metadata(path) == {"modelspec.title": "tiny", "ss_network_dim": "4"}


def test_metadata_of_file_without_metadata_or_other_format(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file(_sample_tensors(), str(path))
    assert read_safetensors_metadata(path) == {}
    ckpt = tmp_path / "model.ckpt"
    torch.save(_sample_tensors(), ckpt)
    assert read_safetensors_metadata(ckpt) == {}


def test_ckpt_state_dict_wrapper_is_unwrapped(tmp_path: Path) -> None:
    path = tmp_path / "train.ckpt"
    tensors = _sample_tensors()
    torch.save({"state_dict": tensors, "global_step": 470000, "epoch": 3}, path)
    _assert_same_tensors(read_state_dict(path), tensors)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_plain_pickled_dict_loads(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"weights{suffix}"
    tensors = _sample_tensors()
    torch.save(tensors, path)
    _assert_same_tensors(read_state_dict(path), tensors)


def test_pickle_with_foreign_global_is_refused_unless_unsafe_allowed(tmp_path: Path) -> None:
    path = tmp_path / "lightning.ckpt"
    tensors = _sample_tensors()
    torch.save({"state_dict": tensors, "hyper_parameters": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(CheckpointLoadError) as caught:
        read_state_dict(path)
    message = str(caught.value)
    assert str(path) in message
    assert "argparse.Namespace" in message and "--disable-safe-unpickle" in message
    _assert_same_tensors(read_state_dict(path, allow_unsafe_pickle=True), tensors)


def test_truncated_safetensors_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    save_file(_sample_tensors(), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    with pytest.raises(CheckpointLoadError) as caught:
        read_state_dict(path)
    assert str(path) in str(caught.value)
    assert "safetensors" in str(caught.value)


@pytest.mark.parametrize("name", ["noise.safetensors", "noise.ckpt"])
def test_random_bytes_are_rejected(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointLoadError) as caught:
        read_state_dict(path)
    assert str(path) in str(caught.value)
    assert "corrupt" in str(caught.value)


def test_truncated_ckpt_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "cut.ckpt"
    torch.save({"state_dict": _sample_tensors()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointLoadError, match="cut.ckpt"):
        read_state_dict(path)


def test_missing_file_and_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(CheckpointLoadError, match="file not found"):
        read_state_dict(tmp_path / "absent.safetensors")
    odd = tmp_path / "weights.onnx"
    odd.write_bytes(b"\0" * 16)
    with pytest.raises(CheckpointLoadError, match="unsupported file type"):
        read_state_dict(odd)


def test_full_file_and_legacy_hashes(tmp_path: Path) -> None:
    path = tmp_path / "blob.ckpt"
    # larger than 1 MiB + 64 KiB so the legacy window is fully inside the file
    data = os.urandom(0x100000 + 0x10000 + 12345)
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert legacy_model_hash(path) == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert legacy_model_hash(tmp_path / "missing.ckpt") == "NOFILE"


def test_legacy_hash_of_small_file_hashes_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "small.ckpt"
    path.write_bytes(b"x" * 1000)   # shorter than the 1 MiB offset: A1111 hashes empty bytes
    assert legacy_model_hash(path) == hashlib.sha256(b"").hexdigest()[:8]


def test_addnet_hash_skips_the_safetensors_header(tmp_path: Path) -> None:
    path = tmp_path / "lora.safetensors"
    save_file(_sample_tensors(), str(path), metadata={"ss_output_name": "lora"})
    data = path.read_bytes()
    header_length = int.from_bytes(data[:8], "little")
    expected = hashlib.sha256(data[8 + header_length:]).hexdigest()
    assert addnet_hash_safetensors(path) == expected
    assert addnet_hash_safetensors(path) != sha256_file(path)
    # metadata lives in the header, so changing it leaves the addnet hash unchanged
    other = tmp_path / "renamed.safetensors"
    save_file(_sample_tensors(), str(other), metadata={"ss_output_name": "another name"})
    assert addnet_hash_safetensors(other) == expected


def test_header_gives_names_shapes_and_dtypes_without_data(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    tensors = _sample_tensors()
    save_file(tensors, str(path))
    header = read_checkpoint_header(path)
    assert {key: (tuple(value.shape), value.dtype, value.device.type)
            for key, value in header.items()} == {
        key: (tuple(value.shape), value.dtype, "meta") for key, value in tensors.items()}
    pickled = tmp_path / "model.ckpt"
    torch.save({"state_dict": tensors}, pickled)
    assert {key: value.shape for key, value in read_checkpoint_header(pickled).items()} == \
        {key: value.shape for key, value in tensors.items()}
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointLoadError, match="truncated.safetensors"):
        read_checkpoint_header(truncated)
