"""The Train tab's "Create embedding" and "Create hypernetwork" (and their API routes): new
files in the embeddings / hypernetworks folders, in A1111's formats, listed at once."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch

from modules.engine.tokenizer import get_clip_tokenizer
from modules.engine.training_files import (DEFAULT_SIZES, embedding_suffix, new_embedding,
                                           new_hypernetwork_data, save_embedding,
                                           save_hypernetwork)

NAME_CHARACTERS = "._- "


class TrainingInputError(ValueError):
    """A create / train request that cannot be carried out (the message says why)."""


def file_name(name: str) -> str:
    """A1111's file name for a new embedding or hypernetwork: letters, digits and `._- `; it
    never names another folder."""
    cleaned = "".join(ch for ch in str(name or "") if ch.isalnum() or ch in NAME_CHARACTERS)
    cleaned = cleaned.strip().strip(".")
    if not cleaned:
        raise TrainingInputError("Give a name (letters, digits, '.', '_', '-' or spaces)")
    return cleaned


def _target(folder: Path, stem: str, suffix: str, overwrite: bool) -> Path:
    path = Path(folder) / f"{stem}{suffix}"
    if path.exists() and not overwrite:
        raise TrainingInputError(f"file {path} already exists (tick overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def create_embedding(model: Any, folder: Path, name: str, *, num_vectors_per_token: int = 1,
                     overwrite_old: bool = False, init_text: str = "*",
                     checkpoint_hash: str | None = None,
                     checkpoint_name: str | None = None) -> Path:
    """A new embedding for `model`'s text encoders, its vectors spread from `init_text`."""
    stem = file_name(name)
    ids = get_clip_tokenizer().encode(init_text or "")
    towers = []
    with torch.no_grad():
        for encoder, config in model.text_encoders:
            device = next(encoder.parameters()).device
            tokens = torch.tensor([ids], dtype=torch.long, device=device)
            vectors = encoder.token_embeddings(tokens)[0] if ids else \
                torch.zeros(0, config.width)
            towers.append((config.kind, vectors.float()))
    try:
        embedding = new_embedding(stem, towers, int(num_vectors_per_token))
    except ValueError as error:
        raise TrainingInputError(str(error)) from error
    path = _target(folder, stem, embedding_suffix(embedding), overwrite_old)
    return save_embedding(embedding, path, checkpoint_hash=checkpoint_hash,
                          checkpoint_name=checkpoint_name)


def create_hypernetwork(folder: Path, name: str, *, enable_sizes: Iterable[int] = DEFAULT_SIZES,
                        overwrite_old: bool = False, layer_structure: Any = "1, 2, 1",
                        activation_func: str = "linear", weight_init: str = "Normal",
                        add_layer_norm: bool = False, use_dropout: bool = False,
                        dropout_structure: Any = None, seed: int = 0) -> Path:
    stem = file_name(name)
    try:
        data = new_hypernetwork_data(
            stem, sizes=[int(size) for size in enable_sizes], layer_structure=layer_structure,
            activation_func=activation_func or "linear", weight_init=weight_init or "Normal",
            add_layer_norm=bool(add_layer_norm), use_dropout=bool(use_dropout),
            dropout_structure_text=dropout_structure, seed=seed)
    except (TypeError, ValueError) as error:
        raise TrainingInputError(str(error)) from error
    return save_hypernetwork(data, _target(folder, stem, ".pt", overwrite_old))
