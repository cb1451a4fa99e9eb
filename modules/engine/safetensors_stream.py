"""safetensors read and written one tensor at a time, with plain file reads and writes.

The safetensors library maps the whole file into memory to read it (every page a merge touches
stays mapped, and counted, in the process) and writes only a complete dict of tensors. A merge of
two or three checkpoints needs neither: it reads each input tensor once and writes each output
tensor once, so these two classes do exactly that, following the format's specification: an
8-byte little-endian header length, a JSON header (`__metadata__` of strings, then per tensor its
`dtype`, `shape` and `data_offsets` into the data block), then the data block. Files written here
are read back by the safetensors library in the tests.
"""
from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from modules.engine.checkpoint_io import SAFETENSORS_DTYPES, CheckpointLoadError, StrPath

#: a header longer than this is not a checkpoint's (real ones are well under 1 MB)
MAX_HEADER_BYTES = 100 * 1024 * 1024
_DTYPE_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}


@dataclass(frozen=True)
class TensorEntry:
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int          # offsets into the data block
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


class SafetensorsReader:
    """A safetensors file whose tensors are read one at a time (no memory map)."""

    def __init__(self, path: StrPath) -> None:
        self.path = Path(path)
        try:
            self._file = open(self.path, "rb")
        except OSError as error:
            raise CheckpointLoadError(path, f"cannot open ({error.strerror})") from error
        try:
            self._entries, self.metadata, self._data_start = self._read_header()
        except BaseException:
            self._file.close()
            raise

    def _read_header(self) -> tuple[dict[str, TensorEntry], dict[str, str], int]:
        file_size = os.fstat(self._file.fileno()).st_size
        prefix = self._file.read(8)
        if len(prefix) < 8:
            raise CheckpointLoadError(self.path, "truncated safetensors file (no header)")
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > min(MAX_HEADER_BYTES, file_size - 8):
            raise CheckpointLoadError(self.path, "corrupt safetensors header length")
        try:
            header = json.loads(self._file.read(header_length))
        except ValueError as error:
            raise CheckpointLoadError(self.path, f"corrupt safetensors header ({error})") from error
        if not isinstance(header, dict):
            raise CheckpointLoadError(self.path, "corrupt safetensors header (not an object)")
        metadata = header.pop("__metadata__", None) or {}
        data_size = file_size - 8 - header_length
        entries = {key: self._entry(key, value, data_size) for key, value in header.items()}
        return entries, {str(k): str(v) for k, v in metadata.items()}, 8 + header_length

    def _entry(self, key: str, value: object, data_size: int) -> TensorEntry:
        try:
            dtype = SAFETENSORS_DTYPES[value["dtype"]]
            shape = tuple(int(size) for size in value["shape"])
            begin, end = (int(offset) for offset in value["data_offsets"])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointLoadError(self.path, f"bad header entry for tensor {key}") from error
        expected = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if not 0 <= begin <= end <= data_size or end - begin != expected:
            raise CheckpointLoadError(self.path, f"tensor {key} lies outside the file's data "
                                                 "(truncated or corrupt file)")
        return TensorEntry(dtype, shape, begin, end)

    def keys(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def entry(self, key: str) -> TensorEntry:
        return self._entries[key]

    def meta(self, key: str) -> torch.Tensor:
        """The tensor's name-less description: a meta tensor of its shape and dtype."""
        entry = self._entries[key]
        return torch.empty(entry.shape, dtype=entry.dtype, device="meta")

    def read(self, key: str) -> torch.Tensor:
        """The tensor, in a buffer of its own (the caller may change it in place)."""
        entry = self._entries[key]
        # a zero-filled bytearray: measured 5x faster to read into than an untouched torch.empty
        # (the kernel then copies into pages that are already mapped)
        buffer = bytearray(entry.nbytes)
        self._file.seek(self._data_start + entry.begin)
        view, filled = memoryview(buffer), 0
        while filled < entry.nbytes:
            count = self._file.readinto(view[filled:])
            if not count:
                raise CheckpointLoadError(self.path, f"truncated file: tensor {key} ends early")
            filled += count
        if entry.nbytes == 0:
            return torch.empty(entry.shape, dtype=entry.dtype)
        return torch.frombuffer(buffer, dtype=entry.dtype).reshape(entry.shape)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "SafetensorsReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class TensorSpec:
    key: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()


def safetensors_file_size(specs: Iterable[TensorSpec], metadata: dict[str, str] | None) -> int:
    """Bytes the file of `specs` will take (header included)."""
    specs = list(specs)
    return 8 + len(_header_bytes(specs, metadata)) + sum(spec.nbytes for spec in specs)


def _header_bytes(specs: list[TensorSpec], metadata: dict[str, str] | None) -> bytes:
    header: dict[str, object] = {}
    if metadata:
        # sorted: the same merge gives the same bytes (the library returns metadata unordered)
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    offset = 0
    for spec in specs:
        if spec.dtype not in _DTYPE_NAMES:
            raise ValueError(f"tensor {spec.key}: dtype {spec.dtype} cannot be saved")
        header[spec.key] = {"dtype": _DTYPE_NAMES[spec.dtype], "shape": list(spec.shape),
                            "data_offsets": [offset, offset + spec.nbytes]}
        offset += spec.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return encoded + b" " * (-len(encoded) % 8)     # the data block starts 8-byte aligned


class SafetensorsStreamWriter:
    """Writes the tensors of `specs`, in that order, to a new file: the header first (all
    shapes and dtypes are known up front), then each tensor's bytes as it is given."""

    def __init__(self, path: StrPath, specs: Iterable[TensorSpec],
                 metadata: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self._specs = list(specs)
        header = _header_bytes(self._specs, metadata)
        self._next = 0
        self._file = open(self.path, "xb")
        try:
            self._file.write(struct.pack("<Q", len(header)))
            self._file.write(header)
        except BaseException:
            self._file.close()
            raise

    def write(self, key: str, tensor: torch.Tensor) -> None:
        if self._next >= len(self._specs):
            raise ValueError(f"tensor {key} was not announced in the header")
        spec = self._specs[self._next]
        if key != spec.key or tensor.dtype != spec.dtype or tuple(tensor.shape) != spec.shape:
            raise ValueError(f"expected tensor {spec.key} {spec.dtype} {list(spec.shape)}, "
                             f"got {key} {tensor.dtype} {list(tensor.shape)}")
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        self._file.write(memoryview(data.numpy()))
        self._next += 1

    def finish(self) -> None:
        """Flush to disk; every announced tensor must have been written."""
        if self._next != len(self._specs):
            missing = self._specs[self._next].key
            raise ValueError(f"the file is incomplete: tensor {missing} was not written")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def close(self) -> None:
        self._file.close()
