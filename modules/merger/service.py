"""The Checkpoint Merger: a MergeRequest (tab, API or recipe) → a new checkpoint in the checkpoint
folder, listed at once. Names are resolved and checked here, the merge itself is streamed by
`modules.engine.checkpoint_merge`, and the result carries A1111's metadata (`sd_merge_recipe`,
`sd_merge_models`) and the recipe that rebuilds it."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from modules.app.checkpoints import CheckpointInfo, CheckpointRegistry, VaeRegistry
from modules.engine.checkpoint_io import read_safetensors_metadata
from modules.engine.checkpoint_merge import ADD_DIFFERENCE, NO_INTERPOLATION, WEIGHTED_SUM, \
    MergeCallback, MergeOptions, MergePlan, TensorSource, VaeTensorSource, open_tensor_source, \
    plan_merge, write_merge
from modules.merger.request import MODEL_SLOTS, InvalidMergeRequest, MergeRequest, \
    check_output_name

log = logging.getLogger(__name__)

_HEX = re.compile(r"^[0-9a-fA-F]{8,64}$")
#: which models each method reads
MODELS_USED = {NO_INTERPOLATION: ("primary",), WEIGHTED_SUM: ("primary", "secondary"),
               ADD_DIFFERENCE: ("primary", "secondary", "tertiary")}
SLOT_LETTERS = {"primary": "A", "secondary": "B", "tertiary": "C"}


class MergeModelNotFound(LookupError):
    """A model the request names is not in the checkpoint folders."""


class MergeInterrupted(Exception):
    """The user stopped the merge; no file was written."""


@dataclass
class MergedCheckpoint:
    title: str
    name: str
    filename: str
    sha256: str | None
    recipe: dict[str, Any]
    tensors: int
    is_inpainting: bool = False
    is_instruct_pix2pix: bool = False
    config: str | None = None
    discarded: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        return f"Checkpoint saved to {self.filename}"


class CheckpointMerger:
    """Merges checkpoints of `checkpoints` into `output_dir` (A1111: `--ckpt-dir` or
    models/Stable-diffusion); `vaes` supplies "Bake in VAE"."""

    def __init__(self, checkpoints: CheckpointRegistry, vaes: VaeRegistry, output_dir: Path, *,
                 allow_unsafe_pickle: bool = False) -> None:
        self.checkpoints = checkpoints
        self.vaes = vaes
        self.output_dir = Path(output_dir)
        self.allow_unsafe_pickle = allow_unsafe_pickle

    # -- resolving --------------------------------------------------------------------------
    def find_model(self, reference: str, slot: str = "primary") -> CheckpointInfo:
        """A checkpoint by title, name or hash (a recipe's full sha256 hashes files as needed)."""
        info = self.checkpoints.get_closest(reference)
        if info is None and _HEX.match(reference):
            info = self._find_by_hash(reference.lower())
        if info is None:
            self.checkpoints.refresh()      # a file added since the last scan
            info = self.checkpoints.get_closest(reference)
        if info is None:
            letter = SLOT_LETTERS[slot]
            raise MergeModelNotFound(f"{slot} model ({letter}) {reference!r} not found in "
                                     f"{self.checkpoints.ckpt_dir}")
        return info

    def _find_by_hash(self, digest: str) -> CheckpointInfo | None:
        for info in self.checkpoints.list():
            sha256 = self._hash(info)
            if sha256.startswith(digest) or info.legacy_hash == digest:
                return info
        return None

    def _hash(self, info: CheckpointInfo) -> str:
        """The full sha256 (computed even with --no-hashing: the recipe records it)."""
        if not info.sha256:
            info.calculate_shorthash(self.checkpoints.hash_cache)
        return str(info.sha256)

    def resolve_models(self, request: MergeRequest) -> dict[str, CheckpointInfo]:
        used = MODELS_USED[request.interp_method]
        models: dict[str, CheckpointInfo] = {}
        for slot in used:
            reference = request.model_name(slot)
            pinned = str(getattr(request, f"{slot}_model_sha256") or "").lower()
            if not reference and not pinned:
                raise InvalidMergeRequest(f"{request.interp_method} needs a {slot} model "
                                          f"({SLOT_LETTERS[slot]}): {slot}_model_name is empty")
            info = self.find_model(reference or pinned, slot)
            if pinned and not self._hash(info).startswith(pinned):
                raise InvalidMergeRequest(
                    f"{slot} model {info.name} has sha256 {info.sha256}, but the request pins "
                    f"{pinned}: a different file than the one the recipe was made from")
            models[slot] = info
        return models

    def find_vae(self, name: str) -> Path | None:
        if not name or name == "None":
            return None
        vae = self.vaes.find(name)
        if vae is None:
            self.vaes.refresh()
            vae = self.vaes.find(name)
        if vae is None:
            raise MergeModelNotFound(f"VAE {name!r} not found in {self.vaes.vae_dir}")
        return Path(vae.filename)

    # -- merging ----------------------------------------------------------------------------
    def merge(self, request: MergeRequest, *, callback: MergeCallback | None = None,
              on_stage: Callable[[str], None] | None = None) -> MergedCheckpoint:
        request.validate()
        stage = on_stage or (lambda text: None)
        models = self.resolve_models(request)
        vae_path = self.find_vae(request.bake_in_vae)
        with contextlib.ExitStack() as stack:
            def source(path: str | Path) -> TensorSource:
                opened = open_tensor_source(path, allow_unsafe_pickle=self.allow_unsafe_pickle)
                stack.callback(opened.close)
                return opened

            a, b, c = (source(models[slot].filename) if slot in models else None
                       for slot in MODEL_SLOTS)
            vae = VaeTensorSource(source(vae_path)) if vae_path else None
            options = MergeOptions(method=request.interp_method,
                                   multiplier=float(request.multiplier),
                                   save_as_half=bool(request.save_as_half),
                                   discard_weights=request.discard_weights or "",
                                   checkpoint_format=request.checkpoint_format,
                                   overwrite=bool(request.overwrite))
            plan = plan_merge(a, b, c, options, vae)
            output = self.output_dir / self.output_file_name(request, models, plan)
            if output.exists() and not request.overwrite:
                raise FileExistsError(f"{output.name} already exists in {self.output_dir}; "
                                      "choose another name or set overwrite")
            metadata = self.metadata(request, models, plan) if request.save_metadata else None
            recipe = self.recipe_of(request, models)
            options = dataclasses.replace(options, metadata=metadata)
            stage("Merging" if request.interp_method != NO_INTERPOLATION else "Saving")
            log.info("Merging %s into %s", ", ".join(m.name for m in models.values()), output)
            write_merge(plan, a, b, c, options, output, vae=vae, callback=callback)
        stage("Checkpoint saved")
        config = self.copy_config(request, models, output)
        self.checkpoints.refresh()
        created = next((info for info in self.checkpoints.list()
                        if Path(info.filename) == output.absolute()), None)
        if created is not None:
            self.checkpoints.ensure_hashed(created)
        return MergedCheckpoint(
            title=created.title if created else output.name,
            name=created.name if created else output.name, filename=str(output),
            sha256=created.sha256 if created else None, recipe=recipe,
            tensors=len(plan.tensors), is_inpainting=plan.is_inpainting,
            is_instruct_pix2pix=plan.is_instruct_pix2pix, config=config,
            discarded=plan.discarded)

    @staticmethod
    def output_file_name(request: MergeRequest, models: dict[str, CheckpointInfo],
                         plan: MergePlan) -> str:
        """A1111's name: the custom name, else "0.7(A) + 0.3(B)" / "A + 0.3(B - C)" / "A", then
        ".inpainting" / ".instruct-pix2pix" and the format's extension."""
        if request.custom_name:
            name = check_output_name(request.custom_name)
            extension = "." + request.checkpoint_format
            if name.lower().endswith(extension):
                name = name[:-len(extension)]
        else:
            a = models["primary"].model_name
            multiplier = float(request.multiplier)
            if request.interp_method == WEIGHTED_SUM:
                b = models["secondary"].model_name
                name = f"{round(1 - multiplier, 2)}({a}) + {round(multiplier, 2)}({b})"
            elif request.interp_method == ADD_DIFFERENCE:
                b, c = models["secondary"].model_name, models["tertiary"].model_name
                name = f"{a} + {round(multiplier, 2)}({b} - {c})"
            else:
                name = a
        name += ".inpainting" if plan.is_inpainting else ""
        name += ".instruct-pix2pix" if plan.is_instruct_pix2pix else ""
        return f"{name}.{request.checkpoint_format}"

    def recipe_of(self, request: MergeRequest, models: dict[str, CheckpointInfo]) -> dict:
        """The request as a recipe file: model names, pinned by their full sha256 when known
        (always with the merge-recipe metadata, which needs them: reading gigabytes only to
        pin a recipe is left to that option)."""
        recipe = request.to_dict()
        for slot in MODEL_SLOTS:
            info = models.get(slot)
            recipe[f"{slot}_model_name"] = info.name if info else ""
            recipe[f"{slot}_model_sha256"] = (info.sha256 or "") if info else ""
        recipe["overwrite"] = False
        return recipe

    def metadata(self, request: MergeRequest, models: dict[str, CheckpointInfo],
                 plan: MergePlan) -> dict[str, str]:
        """The safetensors header metadata A1111 writes."""
        metadata: dict[str, str] = {}
        if request.copy_metadata_fields:
            for info in models.values():
                metadata.update(read_safetensors_metadata(info.filename))
        metadata.update(request.extra_metadata())
        metadata["format"] = "pt"
        if not request.add_merge_recipe:
            return metadata
        primary, secondary, tertiary = (models.get(slot) for slot in MODEL_SLOTS)
        merge_recipe = {
            "type": "webui",
            "primary_model_hash": self._hash(primary),
            "secondary_model_hash": self._hash(secondary) if secondary else None,
            "tertiary_model_hash": self._hash(tertiary) if tertiary else None,
            "interp_method": request.interp_method,
            "multiplier": request.multiplier,
            "save_as_half": request.save_as_half,
            "custom_name": request.custom_name,
            "config_source": request.config_source_index,
            "bake_in_vae": request.bake_in_vae,
            "discard_weights": request.discard_weights,
            "is_inpainting": plan.is_inpainting,
            "is_instruct_pix2pix": plan.is_instruct_pix2pix,
        }
        merge_models: dict[str, Any] = {}
        for info in models.values():
            source_metadata = read_safetensors_metadata(info.filename)
            merge_models[self._hash(info)] = {
                "name": info.name, "legacy_hash": info.legacy_hash,
                "sd_merge_recipe": _json_or_none(source_metadata.get("sd_merge_recipe")),
            }
            merge_models.update(_json_or_none(source_metadata.get("sd_merge_models")) or {})
        metadata["sd_merge_recipe"] = json.dumps(merge_recipe)
        metadata["sd_merge_models"] = json.dumps(merge_models)
        return metadata

    @staticmethod
    def copy_config(request: MergeRequest, models: dict[str, CheckpointInfo],
                    output: Path) -> str | None:
        """A1111's "Copy config from": the sidecar .yaml of A, B or C (the first that has one),
        of B, of C, or none."""
        order = {0: ("primary", "secondary", "tertiary"), 1: ("secondary",), 2: ("tertiary",),
                 3: ()}[request.config_source_index]
        source = next((models[slot].config for slot in order
                       if slot in models and models[slot].config), None)
        if source is None:
            return None
        target = output.with_suffix(".yaml")
        shutil.copyfile(source, target)
        return str(target)


def _json_or_none(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
