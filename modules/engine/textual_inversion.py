"""Textual-inversion embeddings: the file formats users get them in, and the lookup that finds
their names among a prompt's tokens (A1111's EmbeddingDatabase, a1111-compat.md §6.7).

Formats read by `read_embedding`:
- A1111 / original textual inversion `.pt` / `.bin`: `{"string_to_param": {"*": [n, C]}, "name",
  "step", "sd_checkpoint", "sd_checkpoint_name"}` (pickles read with `weights_only=True`);
- `.safetensors` with `emb_params` [n, C], SDXL's `clip_l` [n, 768] + `clip_g` [n, 1280], or one
  single tensor;
- diffusers' `learned_embeds.bin` / `.safetensors`: `{"<token>": [C] or [n, C]}`;
- PNG images with A1111's `sd-ti-embedding` text chunk (base64 JSON whose tensors are
  `{"TORCHTENSOR": nested lists}`), WEBP images carrying the same JSON in their EXIF
  UserComment, and images whose text is gone but whose side strips still hold A1111's pixel
  copy (zlib'd JSON split into low / high nibbles, each XOR'd with an LCG stream, left and right
  of the picture beyond one black column each).
Half-precision files are read as float32.
"""
from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from modules.engine.checkpoint_io import CheckpointLoadError, read_pickle, read_state_dict

EMBEDDING_EXTENSIONS = (".pt", ".bin", ".safetensors", ".png", ".webp")
IMAGE_EXTENSIONS = (".png", ".webp")
PNG_TEXT_KEY = "sd-ti-embedding"
SINGLE = "vec"          # the key of an embedding with one tensor (SD1.x / SD2.x)
MAX_VECTORS = 75        # one prompt chunk: A1111 cannot place a longer embedding either


class EmbeddingError(ValueError):
    """A file that is no embedding this build reads (the message says why)."""


@dataclass(eq=False)
class Embedding:
    """One embedding: `vectors` per text encoder ("vec", or SDXL's "clip_l" / "clip_g"), each
    [count, width] float32."""
    name: str
    vectors: dict[str, Tensor]
    path: Path | None = None
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None

    @property
    def count(self) -> int:
        """Vectors per use (how many prompt tokens it takes)."""
        return next(iter(self.vectors.values())).shape[0]

    @property
    def shape(self) -> int:
        """The width A1111 reports and matches against a model (SDXL: 768 + 1280)."""
        return sum(vector.shape[-1] for vector in self.vectors.values())

    def for_encoder(self, kind: str, width: int) -> Tensor | None:
        """The vectors for one text encoder (kind "clip_l" or "open_clip", `width` channels)."""
        if SINGLE in self.vectors:
            vector = self.vectors[SINGLE]
        else:
            vector = self.vectors.get("clip_l" if kind == "clip_l" else "clip_g")
        return vector if vector is not None and vector.shape[-1] == width else None

    def fits(self, encoders: Iterable[tuple[str, int]]) -> bool:
        """Whether every text encoder (kind, width) of a model has vectors here."""
        return all(self.for_encoder(kind, width) is not None for kind, width in encoders)


def _as_int(value) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _as_text(value) -> str | None:
    return None if value is None else str(value)


def _decode_json_tensors(value):
    if isinstance(value, dict):
        if "TORCHTENSOR" in value:
            return torch.tensor(value["TORCHTENSOR"], dtype=torch.float32)
        return {key: _decode_json_tensors(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_json_tensors(item) for item in value]
    return value


def embedding_to_b64(data: Mapping) -> str:
    """A1111's `embedding_to_b64`: the embedding's dict as JSON (tensors as nested lists),
    base64 — what its preview images carry."""
    def encode(value):
        if isinstance(value, Tensor):
            return {"TORCHTENSOR": value.detach().float().tolist()}
        if isinstance(value, dict):
            return {key: encode(item) for key, item in value.items()}
        return value
    return base64.b64encode(json.dumps(encode(dict(data))).encode()).decode()


def _image_data(path: Path) -> dict:
    with Image.open(path) as image:
        text = getattr(image, "text", None) or {}
        payload = text.get(PNG_TEXT_KEY)
        if payload is None and path.suffix.lower() == ".webp":
            payload = _webp_user_comment(image)
    try:
        if payload is not None:
            return _decode_json_tensors(json.loads(base64.b64decode(payload)))
        with Image.open(path) as image:
            text = _pixel_data(image)
    except (ValueError, TypeError, zlib.error) as error:
        raise EmbeddingError(f"the image's embedding data is unreadable ({error})") from error
    if text is None:
        raise EmbeddingError(f"the image carries no '{PNG_TEXT_KEY}' data")
    try:
        return _decode_json_tensors(json.loads(text))
    except ValueError as error:
        raise EmbeddingError(f"the image's embedding data is unreadable ({error})") from error


def _lcg_nibbles(count: int) -> np.ndarray:
    """The mask A1111 XORs its data nibbles with: an LCG (a = 1664525, c = 1013904223, mod 2³²,
    seed 0), each value mod 255, low four bits."""
    values = np.empty(count, dtype=np.uint8)
    seed = 0
    for index in range(count):
        seed = (1664525 * seed + 1013904223) % 2**32
        values[index] = (seed % 255) & 0x0F
    return values


def _pixel_data(image: Image.Image) -> str | None:
    """The JSON of A1111's pixel copy: the picture cropped to its non-black box, the low
    nibbles of the strips left of the first and right of the last all-black column."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    lit = (pixels > 0).all(axis=2)
    rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    if rows.size == 0:
        return None
    nibbles = pixels[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] & 0x0F
    dark = np.flatnonzero(nibbles.sum(axis=(0, 2)) == 0)
    if dark.size < 2:
        return None

    def strip(block: np.ndarray) -> np.ndarray:
        return block.reshape(-1) ^ _lcg_nibbles(block.size)

    low, high = strip(nibbles[:, :dark.min()]), strip(nibbles[:, dark.max() + 1:])
    if low.size != high.size:
        return None
    packed = ((high << 4) | low).astype(np.uint8).tobytes()
    return zlib.decompressobj().decompress(packed).decode()


def _webp_user_comment(image: Image.Image) -> str | None:
    import piexif
    import piexif.helper
    exif = image.info.get("exif")
    if not exif:
        return None
    try:
        comment = piexif.load(exif).get("Exif", {}).get(piexif.ExifIFD.UserComment)
        return piexif.helper.UserComment.load(comment) if comment else None
    except (ValueError, KeyError, TypeError):
        return None


def _float2d(tensor) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise EmbeddingError(f"expected a tensor, found {type(tensor).__name__}")
    tensor = tensor.detach().float()
    if tensor.ndim == 1:
        tensor = tensor[None]
    if tensor.ndim != 2 or tensor.shape[0] == 0:
        raise EmbeddingError(f"expected [vectors, width], found {list(tensor.shape)}")
    return tensor.contiguous()


def embedding_from_data(name: str, data: Mapping, path: Path | None = None) -> Embedding:
    """An embedding from a file's top-level dict, in any of the formats above."""
    meta = dict(step=_as_int(data.get("step")),
                sd_checkpoint=_as_text(data.get("sd_checkpoint")),
                sd_checkpoint_name=_as_text(data.get("sd_checkpoint_name")))
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)     # a saved ParameterDict
        if not isinstance(params, Mapping) or len(params) != 1:
            raise EmbeddingError("string_to_param must hold exactly one tensor")
        vectors = {SINGLE: _float2d(next(iter(params.values())))}
    elif "clip_l" in data or "clip_g" in data:
        if "clip_l" not in data or "clip_g" not in data:
            raise EmbeddingError("an SDXL embedding needs both clip_l and clip_g")
        vectors = {"clip_l": _float2d(data["clip_l"]), "clip_g": _float2d(data["clip_g"])}
        if vectors["clip_l"].shape[0] != vectors["clip_g"].shape[0]:
            raise EmbeddingError("clip_l and clip_g have different vector counts")
    elif "emb_params" in data:
        vectors = {SINGLE: _float2d(data["emb_params"])}
    else:
        tensors = {key: value for key, value in data.items() if isinstance(value, Tensor)}
        if len(tensors) != 1:
            raise EmbeddingError(f"no embedding tensor among {sorted(map(str, data))[:8]}")
        vectors = {SINGLE: _float2d(next(iter(tensors.values())))}     # diffusers, bare tensor
    embedding = Embedding(name, vectors, path, **meta)
    if embedding.count > MAX_VECTORS:
        raise EmbeddingError(f"{embedding.count} vectors: more than one prompt chunk "
                             f"({MAX_VECTORS}) holds")
    return embedding


def read_embedding(path: Path, *, allow_unsafe_pickle: bool = False) -> Embedding:
    """The embedding in `path` (named after the file; an image's may name itself)."""
    path = Path(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        data = _image_data(path)
        return embedding_from_data(str(data.get("name") or path.stem), data, path)
    try:
        if path.suffix.lower() == ".safetensors":
            data = read_state_dict(path)
        else:
            data = read_pickle(path, allow_unsafe_pickle=allow_unsafe_pickle)
    except CheckpointLoadError as error:
        raise EmbeddingError(error.reason) from error
    if not isinstance(data, Mapping):
        raise EmbeddingError(f"the file holds a {type(data).__name__}, not a dict")
    return embedding_from_data(path.stem, data, path)


@dataclass
class EmbeddingVocabulary:
    """The embeddings a model can use, found by their names' tokens in a prompt (longest name
    first, as A1111 matches them)."""
    embeddings: dict[str, Embedding] = field(default_factory=dict)
    _by_first_token: dict[int, list[tuple[tuple[int, ...], Embedding]]] = \
        field(default_factory=dict)

    @classmethod
    def build(cls, embeddings: Iterable[Embedding], encode_text) -> "EmbeddingVocabulary":
        """`encode_text(name) -> token ids` is the model's tokenizer."""
        vocabulary = cls()
        for embedding in embeddings:
            ids = tuple(encode_text(embedding.name))
            if not ids:
                continue
            vocabulary.embeddings[embedding.name] = embedding
            entries = vocabulary._by_first_token.setdefault(ids[0], [])
            entries.append((ids, embedding))
            entries.sort(key=lambda entry: len(entry[0]), reverse=True)
        return vocabulary

    def find_at(self, tokens: list[int], position: int) -> tuple[Embedding | None, int]:
        """(embedding, tokens its name takes) starting at `position`, or (None, 0)."""
        for ids, embedding in self._by_first_token.get(tokens[position], ()):
            if tuple(tokens[position:position + len(ids)]) == ids:
                return embedding, len(ids)
        return None, 0
