"""Checkpoint merging (A1111's Checkpoint Merger), streamed one tensor at a time.

Methods, as A1111 computes them (a1111 `modules/extras.py`):
* "Weighted sum":     A·(1 − M) + B·M
* "Add difference":   A + (B − C)·M
* "No interpolation": A re-saved (format change, fp16, a baked-in VAE, discarded weights)

A1111's rules are kept: the output has A's keys; a tensor is merged only when its name contains
"model", it is in B (for add difference a key C lacks counts as no difference) and it is not CLIP's
`position_ids`; an inpainting (9 input channels) or instruct-pix2pix (8) A merges with a normal
B in its first 4 channels only (the other order is refused); "Save as float16" halves the merged
fp32 tensors (every fp32 tensor without interpolation); a baked-in VAE replaces A's
`first_stage_model.*` tensors; `Discard weights` drops the keys its regex finds.

Unlike A1111, nothing is loaded whole: the plan is made from the files' headers (architectures
and shapes are checked before a byte of weights is read), then each output tensor is read,
computed in fp32 (or wider) and written, so memory stays near the largest tensor. The output goes
to a temporary file in the destination folder and is renamed only when complete.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch

from modules.engine.checkpoint_io import SAFETENSORS_SUFFIX, StrPath, read_state_dict
from modules.engine.detection import DetectionError, VAE_PREFIX, detect_model_config, \
    extract_vae_state_dict
from modules.engine.safetensors_stream import SafetensorsReader, SafetensorsStreamWriter, \
    TensorSpec, safetensors_file_size

WEIGHTED_SUM = "Weighted sum"
ADD_DIFFERENCE = "Add difference"
NO_INTERPOLATION = "No interpolation"
MERGE_METHODS = (NO_INTERPOLATION, WEIGHTED_SUM, ADD_DIFFERENCE)
#: keys A1111 never merges (`checkpoint_dict_skip_on_merge`)
SKIP_ON_MERGE = frozenset({"cond_stage_model.transformer.text_model.embeddings.position_ids"})
FAMILY_LABELS = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL", "sdxl_refiner": "SDXL refiner"}
VARIANT_LABELS = {"inpaint": " inpainting", "edit": " instruct-pix2pix", "normal": ""}
#: free space kept on the disk beyond the new file
DISK_MARGIN_BYTES = 64 * 1024 * 1024

#: (tensors done, tensors in all, key just written); may raise to stop the merge
MergeCallback = Callable[[int, int, str], None]


class MergeError(ValueError):
    """The inputs or options cannot be merged; the message says why in the user's terms."""


class MergeWriteError(OSError):
    """The output could not be written (disk full, no permission); nothing was left behind."""


class TensorSource(Protocol):
    path: Path

    def keys(self) -> list[str]: ...
    def __contains__(self, key: object) -> bool: ...
    def meta(self, key: str) -> torch.Tensor: ...
    def read(self, key: str) -> torch.Tensor:
        """The tensor in memory of its own: the caller may change it."""
    def close(self) -> None: ...


class LoadedTensorSource:
    """A pickle checkpoint (or VAE), which cannot be read piecewise: torch.load memory-maps it."""

    def __init__(self, path: Path, tensors: dict[str, torch.Tensor]) -> None:
        self.path = path
        self._tensors = tensors

    def keys(self) -> list[str]:
        return list(self._tensors)

    def __contains__(self, key: object) -> bool:
        return key in self._tensors

    def meta(self, key: str) -> torch.Tensor:
        return torch.empty_like(self._tensors[key], device="meta")

    def read(self, key: str) -> torch.Tensor:
        return self._tensors[key].clone()      # a merge changes what it reads in place

    def close(self) -> None:
        self._tensors = {}


class VaeTensorSource:
    """A standalone VAE file seen under checkpoint names (`first_stage_model.<key>`)."""

    def __init__(self, source: TensorSource) -> None:
        self.path = source.path
        self._source = source
        named = {key: key for key in source.keys()}
        self._names = {VAE_PREFIX + short: original for short, original
                       in extract_vae_state_dict(named).items()}

    def keys(self) -> list[str]:
        return list(self._names)

    def __contains__(self, key: object) -> bool:
        return key in self._names

    def meta(self, key: str) -> torch.Tensor:
        return self._source.meta(self._names[key])

    def read(self, key: str) -> torch.Tensor:
        return self._source.read(self._names[key])

    def close(self) -> None:
        self._source.close()


def open_tensor_source(path: StrPath, *, allow_unsafe_pickle: bool = False) -> TensorSource:
    path = Path(path)
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return SafetensorsReader(path)
    return LoadedTensorSource(path, read_state_dict(path, allow_unsafe_pickle=allow_unsafe_pickle))


@dataclass(frozen=True)
class MergeOptions:
    method: str = WEIGHTED_SUM
    multiplier: float = 0.3
    save_as_half: bool = False
    discard_weights: str = ""               # a regex; matching keys are left out
    checkpoint_format: str = "safetensors"  # or "ckpt"
    metadata: dict[str, str] | None = None  # safetensors header metadata
    overwrite: bool = False


@dataclass(frozen=True)
class PlannedTensor:
    """How one output tensor is made: `source` "a" (copied), "vae" (baked in), or the method;
    `channels` limits the merge to A's first input channels (inpainting / pix2pix A)."""
    spec: TensorSpec
    source: str
    channels: int | None = None


@dataclass
class MergePlan:
    tensors: list[PlannedTensor]
    family: str
    is_inpainting: bool = False
    is_instruct_pix2pix: bool = False
    discarded: list[str] = field(default_factory=list)

    def output_size(self, metadata: dict[str, str] | None) -> int:
        return safetensors_file_size((t.spec for t in self.tensors), metadata)


def describe_architecture(source: TensorSource) -> tuple[str, str]:
    """(family, label) of a checkpoint from its header, e.g. ("sdxl", "SDXL")."""
    try:
        config = detect_model_config({key: source.meta(key) for key in source.keys()})
    except DetectionError as error:
        raise MergeError(f"{source.path.name} is not a Stable Diffusion checkpoint this merger "
                         f"knows: {error}") from error
    return config.family, FAMILY_LABELS[config.family] + VARIANT_LABELS[config.variant]


def _result_dtype(*metas: torch.Tensor, save_as_half: bool) -> torch.dtype:
    dtype = metas[0].dtype
    for meta in metas[1:]:
        dtype = torch.promote_types(dtype, meta.dtype)
    return torch.float16 if save_as_half and dtype == torch.float32 else dtype


def _input_channel_rule(key: str, a: torch.Tensor, b: torch.Tensor) -> tuple[int, str]:
    """For a key whose shapes differ in the input-channel dimension only: (channels merged,
    "inpainting" / "instruct-pix2pix"); refuses every other mismatch."""
    same_elsewhere = (a.dim() == b.dim() >= 2
                      and a.shape[:1] + a.shape[2:] == b.shape[:1] + b.shape[2:])
    if same_elsewhere:
        if a.shape[1] == 4 and b.shape[1] == 9:
            raise MergeError("When merging an inpainting model with a normal one, A must be the "
                             "inpainting model.")
        if a.shape[1] == 4 and b.shape[1] == 8:
            raise MergeError("When merging an instruct-pix2pix model with a normal one, A must be "
                             "the instruct-pix2pix model.")
        if b.shape[1] == 4 and a.shape[1] in (8, 9):
            return 4, "inpainting" if a.shape[1] == 9 else "instruct-pix2pix"
    raise MergeError(f"the models do not fit together: {key} is {list(a.shape)} in A but "
                     f"{list(b.shape)} in B")


def plan_merge(a: TensorSource, b: TensorSource | None, c: TensorSource | None,
               options: MergeOptions, vae: TensorSource | None = None) -> MergePlan:
    """Check the inputs against each other from their headers and decide every output tensor."""
    if options.method not in MERGE_METHODS:
        raise MergeError(f"unknown interpolation method {options.method!r}; "
                         f"choose one of {', '.join(MERGE_METHODS)}")
    needed = {NO_INTERPOLATION: (), WEIGHTED_SUM: ("B",), ADD_DIFFERENCE: ("B", "C")}
    given = {"B": b, "C": c}
    for letter in needed[options.method]:
        if given[letter] is None:
            raise MergeError(f"{options.method} needs a model {letter}")
    try:
        discard = re.compile(options.discard_weights) if options.discard_weights else None
    except re.error as error:
        raise MergeError(f"Discard weights is not a valid regular expression: {error}") from error

    sources = [s for s in (a, b if options.method != NO_INTERPOLATION else None,
                           c if options.method == ADD_DIFFERENCE else None) if s is not None]
    families = [describe_architecture(source) for source in sources]
    if len({family for family, _ in families}) > 1:
        described = " and ".join(f"{s.path.name} ({label})" for s, (_, label) in
                                 zip(sources, families))
        raise MergeError(f"cannot merge {described}: the architectures differ")

    plan = MergePlan(tensors=[], family=families[0][0])
    vae_used = False
    for key in a.keys():
        if discard is not None and discard.search(key):
            plan.discarded.append(key)
            continue
        meta_a = a.meta(key)
        if vae is not None and key in vae:
            meta_vae = vae.meta(key)
            if meta_vae.shape != meta_a.shape:
                raise MergeError(f"the VAE {vae.path.name} does not fit {a.path.name}: {key} is "
                                 f"{list(meta_vae.shape)} there, {list(meta_a.shape)} here")
            dtype = _result_dtype(meta_vae, save_as_half=options.save_as_half)
            plan.tensors.append(PlannedTensor(TensorSpec(key, dtype, meta_a.shape), "vae"))
            vae_used = True
            continue
        plan.tensors.append(_plan_tensor(key, meta_a, b, c, options, plan))
    if vae is not None and not vae_used:
        raise MergeError(f"the VAE {vae.path.name} has no weights for {a.path.name}")
    return plan


def _plan_tensor(key: str, meta_a: torch.Tensor, b: TensorSource | None,
                 c: TensorSource | None, options: MergeOptions, plan: MergePlan) -> PlannedTensor:
    merging = (options.method != NO_INTERPOLATION and b is not None and key in b
               and "model" in key and key not in SKIP_ON_MERGE and meta_a.is_floating_point())
    if not merging:
        half = options.save_as_half and options.method == NO_INTERPOLATION
        dtype = _result_dtype(meta_a, save_as_half=half)
        return PlannedTensor(TensorSpec(key, dtype, tuple(meta_a.shape)), "a")
    meta_b = b.meta(key)
    metas = [meta_a, meta_b]
    if options.method == ADD_DIFFERENCE and c is not None and key in c:
        meta_c = c.meta(key)
        if meta_c.shape != meta_b.shape:
            raise MergeError(f"B and C do not fit together: {key} is {list(meta_b.shape)} in B "
                             f"but {list(meta_c.shape)} in C")
        metas.append(meta_c)
    if not all(meta.is_floating_point() for meta in metas):
        return PlannedTensor(TensorSpec(key, meta_a.dtype, tuple(meta_a.shape)), "a")
    channels = None
    if meta_a.shape != meta_b.shape:
        channels, kind = _input_channel_rule(key, meta_a, meta_b)
        plan.is_inpainting |= kind == "inpainting"
        plan.is_instruct_pix2pix |= kind == "instruct-pix2pix"
    dtype = _result_dtype(*metas, save_as_half=options.save_as_half)
    return PlannedTensor(TensorSpec(key, dtype, tuple(meta_a.shape)), options.method, channels)


def _merge_values(method: str, multiplier: float, a: torch.Tensor, b: torch.Tensor,
                  c: torch.Tensor | None) -> torch.Tensor:
    """In place on `a` (and `b`), which the caller owns: a full-size merge allocates no
    temporaries of a tensor's size."""
    if method == WEIGHTED_SUM:
        return a.mul_(1 - multiplier).add_(b, alpha=multiplier)       # A·(1 − M) + B·M
    if c is None:
        return a                                                      # no difference: A
    return a.add_(b.sub_(c), alpha=multiplier)                        # A + (B − C)·M


def compute_tensor(planned: PlannedTensor, a: TensorSource, b: TensorSource | None,
                   c: TensorSource | None, vae: TensorSource | None,
                   multiplier: float) -> torch.Tensor:
    """One output tensor, computed in fp32 (or the inputs' wider type) and cast to its dtype."""
    key, out_dtype = planned.spec.key, planned.spec.dtype
    if planned.source == "a":
        return a.read(key).to(out_dtype)
    if planned.source == "vae":
        return vae.read(key).to(out_dtype)
    work = torch.promote_types(out_dtype, torch.float32)
    # each read is a buffer of its own (TensorSource.read), so the merge may work in place
    value_a = a.read(key).to(work)
    value_b = b.read(key).to(work)
    value_c = c.read(key).to(work) if c is not None and key in c and \
        planned.source == ADD_DIFFERENCE else None
    target = value_a if planned.channels is None else value_a[:, :planned.channels]
    _merge_values(planned.source, multiplier, target, value_b, value_c)
    return value_a.to(out_dtype)


def temporary_output_path(output: Path) -> Path:
    """A hidden name beside the output, so the final rename stays on one filesystem."""
    return output.with_name(f".{output.name}.{secrets.token_hex(4)}.partial")


def check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_MARGIN_BYTES:
        raise MergeWriteError(f"not enough disk space in {folder}: the merged checkpoint needs "
                              f"{needed / 2**20:.0f} MiB, {free / 2**20:.0f} MiB are free")


def write_merge(plan: MergePlan, a: TensorSource, b: TensorSource | None, c: TensorSource | None,
                options: MergeOptions, output: Path, *, vae: TensorSource | None = None,
                callback: MergeCallback | None = None) -> None:
    """Compute and write every tensor of `plan` to `output` (safetensors streamed; ckpt through
    torch.save, which needs the whole dict). An exception (including one the callback raises to
    interrupt) leaves no file behind; an existing `output` is replaced only with `overwrite`."""
    if output.exists() and not options.overwrite:
        raise FileExistsError(f"{output.name} already exists")
    metadata = options.metadata if options.checkpoint_format == "safetensors" else None
    check_free_space(output.parent, plan.output_size(metadata))
    temporary = temporary_output_path(output)
    total = len(plan.tensors)

    def tensors():
        for index, planned in enumerate(plan.tensors):
            yield planned.spec.key, compute_tensor(planned, a, b, c, vae, options.multiplier)
            if callback is not None:
                callback(index + 1, total, planned.spec.key)

    try:
        if options.checkpoint_format == "safetensors":
            writer = SafetensorsStreamWriter(temporary, (t.spec for t in plan.tensors), metadata)
            with contextlib.closing(writer):
                for key, tensor in tensors():
                    writer.write(key, tensor)
                writer.finish()
        elif options.checkpoint_format == "ckpt":
            torch.save(dict(tensors()), temporary)
        else:
            raise MergeError(f"unknown checkpoint format {options.checkpoint_format!r}")
        if output.exists() and not options.overwrite:
            raise FileExistsError(f"{output.name} already exists")
        os.replace(temporary, output)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, (FileExistsError, MergeWriteError)):
            raise
        raise MergeWriteError(f"could not write {output.name} ({error.strerror or error}); "
                              "nothing was saved") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
