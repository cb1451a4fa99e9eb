"""A merge request: the fields of A1111's Checkpoint Merger (the API's and the tab's names), and
the JSON recipe, which is the same fields in a file, with the models' hashes to pin them."""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from modules.engine.checkpoint_merge import MERGE_METHODS, WEIGHTED_SUM

CONFIG_SOURCES = ("A, B or C", "B", "C", "Don't")
CHECKPOINT_FORMATS = ("safetensors", "ckpt")
MODEL_SLOTS = ("primary", "secondary", "tertiary")
#: characters no file name may hold on Windows or Linux (the name stays inside the folder)
_FORBIDDEN_NAME = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


class InvalidMergeRequest(ValueError):
    """A field of the request is wrong; the message names it."""


@dataclass
class MergeRequest:
    primary_model_name: str = ""
    secondary_model_name: str = ""
    tertiary_model_name: str = ""
    interp_method: str = WEIGHTED_SUM
    multiplier: float = 0.3
    save_as_half: bool = False
    custom_name: str = ""
    checkpoint_format: str = "safetensors"
    config_source: int | str = 0            # index into CONFIG_SOURCES, or its text
    bake_in_vae: str = "None"
    discard_weights: str = ""
    save_metadata: bool = True
    add_merge_recipe: bool = True
    copy_metadata_fields: bool = True
    metadata_json: str = "{}"
    # ours: the sha256 each model must have (recipes pin their inputs), and replacing a file
    primary_model_sha256: str = ""
    secondary_model_sha256: str = ""
    tertiary_model_sha256: str = ""
    overwrite: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MergeRequest":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidMergeRequest(f"unknown merge field(s): {', '.join(unknown)}")
        values = {key: ("" if value is None and key.endswith(("_name", "_sha256")) else value)
                  for key, value in data.items()}
        request = cls(**values)
        request.validate()
        return request

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def config_source_index(self) -> int:
        if isinstance(self.config_source, str) and not self.config_source.isdigit():
            return CONFIG_SOURCES.index(self.config_source)
        return int(self.config_source)

    def model_name(self, slot: str) -> str:
        return str(getattr(self, f"{slot}_model_name") or "").strip()

    def validate(self) -> None:
        """Check every field that does not need the model folders."""
        if self.interp_method not in MERGE_METHODS:
            raise InvalidMergeRequest(f"interp_method must be one of {', '.join(MERGE_METHODS)}, "
                                      f"not {self.interp_method!r}")
        if isinstance(self.multiplier, bool) or not isinstance(self.multiplier, (int, float)) \
                or not math.isfinite(self.multiplier):
            raise InvalidMergeRequest(
                f"multiplier must be a finite number, not {self.multiplier!r}")
        if self.checkpoint_format not in CHECKPOINT_FORMATS:
            raise InvalidMergeRequest(f"checkpoint_format must be one of "
                                      f"{', '.join(CHECKPOINT_FORMATS)}, not "
                                      f"{self.checkpoint_format!r}")
        try:
            index = self.config_source_index
        except ValueError:
            index = -1
        if not 0 <= index < len(CONFIG_SOURCES):
            raise InvalidMergeRequest(f"config_source must be 0-3 or one of "
                                      f"{', '.join(CONFIG_SOURCES)}, not {self.config_source!r}")
        if self.custom_name:
            check_output_name(self.custom_name)
        try:
            metadata = json.loads(self.metadata_json or "{}")
        except ValueError as error:
            raise InvalidMergeRequest(f"metadata_json is not valid JSON: {error}") from error
        if not isinstance(metadata, dict):
            raise InvalidMergeRequest("metadata_json must be a JSON object")
        for slot in MODEL_SLOTS:
            for suffix in ("_model_name", "_model_sha256"):
                if not isinstance(getattr(self, slot + suffix) or "", str):
                    raise InvalidMergeRequest(f"{slot}{suffix} must be a string")

    def extra_metadata(self) -> dict[str, str]:
        """metadata_json's entries (safetensors metadata values are strings)."""
        metadata = json.loads(self.metadata_json or "{}")
        return {str(key): value if isinstance(value, str) else json.dumps(value)
                for key, value in metadata.items()}


def check_output_name(name: str) -> str:
    """A custom output name stays a plain file name inside the checkpoint folder."""
    stripped = name.strip()
    if not stripped or ".." in stripped or _FORBIDDEN_NAME.search(stripped):
        raise InvalidMergeRequest(f"custom_name {name!r} must be a plain file name: no folders, "
                                  "'..' or any of <>:\"/\\|?*")
    if stripped.startswith("."):
        raise InvalidMergeRequest(f"custom_name {name!r} must not start with a dot")
    if len(stripped) > 200:
        raise InvalidMergeRequest("custom_name is longer than 200 characters")
    return stripped


def load_recipe(path: str | Path) -> MergeRequest:
    """A recipe file: a JSON object of MergeRequest fields."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidMergeRequest(f"cannot read recipe {path}: {error.strerror}") from error
    except ValueError as error:
        raise InvalidMergeRequest(f"recipe {path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise InvalidMergeRequest(f"recipe {path} must hold a JSON object")
    data.pop("comment", None)     # a recipe may explain itself
    return MergeRequest.from_dict(data)


def recipe_from_checkpoint(path: str | Path) -> dict[str, Any]:
    """The recipe a merged .safetensors file was made with, from the `sd_merge_recipe` and
    `sd_merge_models` metadata A1111 (and we) write: models by name, pinned by sha256."""
    from modules.engine.checkpoint_io import read_safetensors_metadata

    metadata = read_safetensors_metadata(path)
    try:
        recipe = json.loads(metadata["sd_merge_recipe"])
        models = json.loads(metadata.get("sd_merge_models") or "{}")
    except (KeyError, ValueError) as error:
        raise InvalidMergeRequest(f"{Path(path).name} holds no merge recipe "
                                  "(sd_merge_recipe metadata)") from error
    request = MergeRequest()
    for key in ("interp_method", "multiplier", "save_as_half", "custom_name", "bake_in_vae",
                "discard_weights"):
        if recipe.get(key) is not None:
            setattr(request, key, recipe[key])
    request.config_source = int(recipe.get("config_source") or 0)
    request.checkpoint_format = Path(path).suffix.lstrip(".").lower() or "safetensors"
    for slot in MODEL_SLOTS:
        digest = recipe.get(f"{slot}_model_hash")
        if digest:
            setattr(request, f"{slot}_model_sha256", digest)
            setattr(request, f"{slot}_model_name", (models.get(digest) or {}).get("name", ""))
    request.validate()
    return request.to_dict()
