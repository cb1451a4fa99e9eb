"""Reading checkpoint files and hashing them.

safetensors files are read through the safetensors library (memory-mapped); pickle formats
(`.ckpt/.pt/.pth/.bin`) only through `torch.load(weights_only=True)` unless the user opted out
with `--disable-safe-unpickle`. Hash functions follow A1111 (a1111-compat.md §5.5).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
HASH_BLOCK_SIZE = 1024 * 1024
LEGACY_HASH_OFFSET = 0x100000
LEGACY_HASH_LENGTH = 0x10000

StrPath = str | os.PathLike[str]


class CheckpointLoadError(Exception):
    """A checkpoint could not be read or does not fit the model; the message names the file."""

    def __init__(self, path: StrPath, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot load checkpoint {self.path}: {reason}")


def read_state_dict(path: StrPath, *, allow_unsafe_pickle: bool = False,
                    device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint file, keyed by their names in the file.

    A top-level `state_dict` entry (LDM `.ckpt` training files), or a `model` entry beside no
    tensors, is unwrapped; non-tensor entries (`global_step`, `epoch`, ...) are dropped.
    """
    file_path = Path(path)
    if not file_path.is_file():
        raise CheckpointLoadError(path, "file not found")
    suffix = file_path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        loaded = _read_safetensors(file_path, device)
    elif suffix in PICKLE_SUFFIXES:
        loaded = _read_pickle(file_path, device, allow_unsafe_pickle)
    else:
        raise CheckpointLoadError(path, f"unsupported file type {suffix!r}")
    return _tensors_only(file_path, loaded)


# safetensors dtype names → torch dtypes (what a checkpoint header may name)
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64,
    "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_checkpoint_header(path: StrPath, *,
                           allow_unsafe_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint as a meta tensor (name, shape, dtype; no data).

    For safetensors only the JSON header is read, so a model switch can check a new file before
    the loaded model is released, without holding a second model's weights. Pickles are opened
    memory-mapped (lazily) and their tensors turned into meta tensors.
    """
    file_path = Path(path)
    if not file_path.is_file():
        raise CheckpointLoadError(path, "file not found")
    if file_path.suffix.lower() != SAFETENSORS_SUFFIX:
        tensors = read_state_dict(path, allow_unsafe_pickle=allow_unsafe_pickle)
        return {key: torch.empty_like(value, device="meta") for key, value in tensors.items()}
    try:
        with safe_open(str(file_path), framework="pt") as handle:
            header = {}
            for key in handle.keys():
                tensor_slice = handle.get_slice(key)
                dtype = SAFETENSORS_DTYPES.get(tensor_slice.get_dtype())
                if dtype is None:
                    raise CheckpointLoadError(
                        path, f"tensor {key} has the unsupported dtype {tensor_slice.get_dtype()}")
                header[key] = torch.empty(tensor_slice.get_shape(), dtype=dtype, device="meta")
    except CheckpointLoadError:
        raise
    except Exception as error:  # safetensors raises its own (Rust) error types
        raise CheckpointLoadError(path,
                                  f"corrupt or truncated safetensors file ({error})") from error
    if not header:
        raise CheckpointLoadError(path, "the file contains no tensors")
    return header


def _read_safetensors(path: Path, device: str | torch.device) -> dict:
    try:
        return load_file(str(path), device=str(device))
    except Exception as error:  # safetensors raises its own (Rust) error types
        raise CheckpointLoadError(path, f"corrupt or truncated safetensors file ({error})") from error


def read_weights_file(path: StrPath, *, allow_unsafe_pickle: bool = False) -> dict:
    """A weights file of an auxiliary network (upscaler, face restorer, CLIP, DeepDanbooru) as
    the dict it holds, non-tensor entries kept (tag lists, `params_ema`, …): safetensors, or a
    pickle read safely whose top-level `state_dict` entry is unwrapped."""
    if str(path).lower().endswith(SAFETENSORS_SUFFIX):
        return read_state_dict(path)
    data = read_pickle(path, allow_unsafe_pickle=allow_unsafe_pickle)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise CheckpointLoadError(path, f"the file holds a {type(data).__name__}, "
                                        "not a state dict")
    return data


def read_pickle(path: StrPath, *, allow_unsafe_pickle: bool = False) -> object:
    """A pickle file's object as it is (dicts with metadata kept), on the CPU; the same safe
    loading and messages as `read_state_dict`."""
    if not Path(path).is_file():
        raise CheckpointLoadError(path, "file not found")
    return _read_pickle(Path(path), "cpu", allow_unsafe_pickle)


def _read_pickle(path: Path, device: str | torch.device, allow_unsafe_pickle: bool) -> object:
    weights_only = not allow_unsafe_pickle
    try:
        try:
            return torch.load(path, map_location=device, weights_only=weights_only, mmap=True)
        except RuntimeError as error:
            # mmap needs the zip-based format; files from torch < 1.6 are read fully instead
            if "mmap" not in str(error):
                raise
            return torch.load(path, map_location=device, weights_only=weights_only)
    except pickle.UnpicklingError as error:
        # torch's message is long; keep only the name of the refused global
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if weights_only and refused:
            raise CheckpointLoadError(
                path, f"the pickle contains a non-tensor object ({refused.group(1)}) and is "
                      "refused by the safe loader (use --disable-safe-unpickle only for files "
                      "you trust)") from error
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(error))
        reason = detail.group(1).strip() if detail else str(error).splitlines()[0]
        raise CheckpointLoadError(path, f"corrupt or unreadable pickle checkpoint ({reason})") from error
    except Exception as error:
        raise CheckpointLoadError(
            path, f"corrupt, truncated or unreadable pickle checkpoint ({error})") from error


def _tensors_only(path: Path, loaded: object) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    elif isinstance(loaded, dict) and isinstance(loaded.get("model"), dict) \
            and not any(isinstance(value, torch.Tensor) for value in loaded.values()):
        loaded = loaded["model"]         # training checkpoints such as ZoeDepth's releases
    if not isinstance(loaded, dict):
        raise CheckpointLoadError(path, f"expected a dict of tensors, found {type(loaded).__name__}")
    tensors = {key: value for key, value in loaded.items()
               if isinstance(key, str) and isinstance(value, torch.Tensor)}
    if not tensors:
        raise CheckpointLoadError(path, "the file contains no tensors")
    return tensors


def read_safetensors_metadata(path: StrPath) -> dict[str, str]:
    """The `__metadata__` of a safetensors file ({} when absent or for other formats)."""
    if Path(path).suffix.lower() != SAFETENSORS_SUFFIX:
        return {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as error:
        raise CheckpointLoadError(path, f"cannot read safetensors header ({error})") from error


def sha256_file(path: StrPath) -> str:
    """Full-file sha256 (hex), read in 1 MiB blocks: A1111's model / VAE / TI hash."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(HASH_BLOCK_SIZE), b""):
            digest.update(block)
    return digest.hexdigest()


def legacy_model_hash(path: StrPath) -> str:
    """Pre-Oct-2022 8-hex model hash: sha256 of 64 KiB at offset 1 MiB; "NOFILE" if missing."""
    try:
        with open(path, "rb") as handle:
            handle.seek(LEGACY_HASH_OFFSET)
            return hashlib.sha256(handle.read(LEGACY_HASH_LENGTH)).hexdigest()[:8]
    except FileNotFoundError:
        return "NOFILE"


def addnet_hash_safetensors(path: StrPath) -> str:
    """kohya "addnet" hash: sha256 (hex) of a safetensors file's bytes after its JSON header."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        handle.seek(8 + header_length)
        for block in iter(lambda: handle.read(HASH_BLOCK_SIZE), b""):
            digest.update(block)
    return digest.hexdigest()
