"""Full-size checkpoints from the key/shape lists of real files (`../shared/ref/*.json`).

`write_sparse_checkpoint` writes a real safetensors file of the model's full size whose tensor data
is a hole (zeros): a few hundred bytes on disk, but loading it reads and materialises every tensor
exactly as a 4 GB download would. Tiny models cannot show what scales with the weights (a leak of
a whole model across switches, the peak of a load); these can.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

_CANDIDATE_REF_DIRS = (Path(__file__).resolve().parents[2] / "shared" / "ref",
                       Path("/work/shared/ref"))
REF_DIR = next((folder for folder in _CANDIDATE_REF_DIRS if folder.is_dir()),
               _CANDIDATE_REF_DIRS[-1])
_DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}


def load_ref(name: str) -> dict:
    return json.loads((REF_DIR / f"{name}.json").read_text())


def write_sparse_checkpoint(ref_name: str, path: Path, *, dtype: str = "F32") -> int:
    """Write the weights of `ref_name` (every tensor a strict load needs) as a zero-filled sparse
    safetensors file at `path`; returns the size of its tensor data in bytes."""
    header: dict[str, dict] = {}
    offset = 0
    for key, shape in load_ref(ref_name)["tensors"].items():
        nbytes = math.prod(shape) * _DTYPE_BYTES[dtype]
        header[key] = {"dtype": dtype, "shape": list(shape),
                       "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)      # the data starts 8-byte aligned
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        handle.truncate(8 + len(encoded) + offset)
    return offset
