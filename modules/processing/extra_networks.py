"""A job's LoRAs and hypernetworks: `<lora:…>` tags of the batch's prompts (A1111's forms:
`<lora:name>`, `<lora:name:0.8>`, `<lora:name:te:unet>`, `te=` / `unet=`, `dyn=` for the first
ranks only) resolved against models/Lora (and --lora-dir, subfolders; by file name or by
the training metadata's `ss_output_name`), applied to the model for the batch as a `LoraPatch`
and taken off after it. `<hypernet:name:m>` tags do the same with models/hypernetworks files
(`HypernetworkPatch`). `Lora hashes` go into the infotext; a network that cannot be used is a
warning naming it and the job runs without it.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Iterable

from torch import Tensor

from modules.engine.checkpoint_io import CheckpointLoadError, addnet_hash_safetensors, \
    read_safetensors_metadata, read_state_dict, sha256_file
from modules.engine.hypernetwork import Hypernetwork, HypernetworkError, HypernetworkPatch, \
    read_hypernetwork
from modules.engine.lora import LoraError, LoraNetwork, LoraPatch, build_network, patch_bytes, \
    patched_weights, target_index
from modules.processing.memory_guard import MemoryGuard
from modules.engine.prompt_parser import extract_extra_networks

log = logging.getLogger(__name__)
LORA_EXTENSIONS = (".safetensors", ".pt", ".ckpt")
HYPERNETWORK_EXTENSIONS = (".pt",)
CACHE_SIZE = 4          # networks kept built for the loaded model (repeated jobs reuse them)


@dataclass(frozen=True)
class LoraFile:
    name: str           # the file's stem: what `<lora:name>` names
    alias: str          # `ss_output_name` from the training metadata, else the name
    path: Path


class LoraLibrary:
    """The LoRA files and the networks built from them (per model, a few kept)."""

    def __init__(self, folders: Iterable[Path], *, allow_unsafe_pickle: bool = False) -> None:
        self.folders = [Path(folder) for folder in folders]
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self._lock = threading.Lock()
        self._files: list[LoraFile] | None = None
        self._networks: dict[tuple, LoraNetwork] = {}
        self._hashes: dict[tuple, str] = {}
        # per model (dropped with it): (files and multipliers, the patched parameters)
        self._patched: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def refresh(self) -> None:
        with self._lock:
            self._files = None

    def files(self) -> list[LoraFile]:
        with self._lock:
            if self._files is None:
                self._files = [self._describe(path) for folder in self.folders
                               if folder.is_dir() for path in sorted(folder.rglob("*"))
                               if path.is_file() and path.suffix.lower() in LORA_EXTENSIONS]
            return list(self._files)

    @staticmethod
    def _describe(path: Path) -> LoraFile:
        try:
            alias = read_safetensors_metadata(path).get("ss_output_name") or path.stem
        except CheckpointLoadError:
            alias = path.stem
        return LoraFile(path.stem, str(alias), path)

    def find(self, name: str) -> LoraFile | None:
        """By file name, then by alias; a name not found reads the folders again (a file added
        since the last look)."""
        for attempt in range(2):
            files = self.files()
            found = next((f for f in files if f.name == name), None) or \
                next((f for f in files if f.alias == name), None)
            if found is not None or attempt:
                return found
            self.refresh()
        return None

    def short_hash(self, item: LoraFile) -> str:
        """A1111's Lora hash: the first 12 hex digits of the file's "addnet" hash (safetensors:
        of the tensor data only) or sha256."""
        key = (item.path, item.path.stat().st_mtime_ns)
        with self._lock:
            if key not in self._hashes:
                digest = addnet_hash_safetensors(item.path) \
                    if item.path.suffix.lower() == ".safetensors" else sha256_file(item.path)
                self._hashes[key] = digest[:12]
            return self._hashes[key]

    def patched_weights(self, model: Any, networks: list[tuple[LoraNetwork, float, float]],
                        key: tuple, memory: MemoryGuard | None) -> dict[str, Tensor]:
        """The model's parameters with these networks in them: kept from the last job that
        used the same files and multipliers (one set per model, while it takes at most half
        the free memory), else computed — after the memory guard has seen room for them."""
        with self._lock:
            kept = self._patched.pop(model, None)
        if kept is not None and kept[0] == key:
            with self._lock:
                self._patched[model] = kept
            return kept[1]
        del kept                                 # another set: its memory comes back first
        needed = patch_bytes(model, networks)
        if memory is not None:
            memory.require(needed, "applying the LoRA(s) (a patched copy of the weights they "
                           "change)", model.device)
        weights = patched_weights(model, networks)
        if memory is None or needed <= memory.budget(model.device) // 2:
            with self._lock:
                self._patched[model] = (key, weights)
        return weights

    def network(self, item: LoraFile, model: Any) -> LoraNetwork:
        """The file's modules matched onto `model` (built once per file and model)."""
        key = (item.path, item.path.stat().st_mtime_ns, id(model))
        with self._lock:
            if key in self._networks:
                return self._networks[key]
        state_dict = read_state_dict(item.path, allow_unsafe_pickle=self.allow_unsafe_pickle)
        shapes = {name: tensor.shape for name, tensor in model.state_dict().items()}
        network = build_network(item.name, state_dict, target_index(shapes), shapes,
                                res_blocks=model.config.unet.num_res_blocks)
        with self._lock:
            self._networks[key] = network
            while len(self._networks) > CACHE_SIZE:
                self._networks.pop(next(iter(self._networks)))
        return network


class HypernetworkLibrary:
    """models/hypernetworks (subfolders too), found by file name; networks read once per file
    change (a few kept)."""

    def __init__(self, folders: Iterable[Path], *, allow_unsafe_pickle: bool = False) -> None:
        self.folders = [Path(folder) for folder in folders]
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self._lock = threading.Lock()
        self._networks: dict[tuple, Hypernetwork] = {}

    def files(self) -> list[Path]:
        return [path for folder in self.folders if folder.is_dir()
                for path in sorted(folder.rglob("*"))
                if path.is_file() and path.suffix.lower() in HYPERNETWORK_EXTENSIONS]

    def find(self, name: str) -> Path | None:
        return next((path for path in self.files() if path.stem == name), None)

    def network(self, path: Path) -> Hypernetwork:
        key = (path, path.stat().st_mtime_ns)
        with self._lock:
            if key in self._networks:
                return self._networks[key]
        network = read_hypernetwork(path, allow_unsafe_pickle=self.allow_unsafe_pickle)
        with self._lock:
            self._networks[key] = network
            while len(self._networks) > CACHE_SIZE:
                self._networks.pop(next(iter(self._networks)))
        return network


def hypernet_tags(prompts: Iterable[str], default_multiplier: float) -> list[tuple[str, float]]:
    """(name, multiplier) of every `<hypernet:name[:m]>` tag, first of each name."""
    found: dict[str, float] = {}
    for prompt in prompts:
        for args in extract_extra_networks(prompt)[1].get("hypernet", []):
            if not args or not args[0] or args[0] in found:
                continue
            try:
                found[args[0]] = float(args[1]) if len(args) > 1 else default_multiplier
            except ValueError:
                found[args[0]] = float("nan")
    return list(found.items())


def lora_tags(prompts: Iterable[str], default_multiplier: float
              ) -> list[tuple[str, float, float, int | None]]:
    """(name, text-encoder multiplier, UNet multiplier, dyn rank or None) of every `<lora:…>`
    tag (`<lora:name:te:unet:dyn>`, or `te=` / `unet=` / `dyn=`), first one of each name wins
    (as A1111 activates one entry per network). A value that is no number is NaN (dyn: 0)."""
    found: dict[str, tuple[float, float, int | None]] = {}
    for prompt in prompts:
        for args in extract_extra_networks(prompt)[1].get("lora", []):
            if not args or not args[0] or args[0] in found:
                continue
            positional = [a for a in args[1:] if "=" not in a]
            named = dict(a.split("=", 1) for a in args[1:] if "=" in a)
            try:
                te = float(named.get("te", positional[0] if positional else default_multiplier))
                unet = float(named.get("unet", positional[1] if len(positional) > 1 else te))
            except ValueError:
                te = unet = float("nan")
            dyn_text = named.get("dyn", positional[2] if len(positional) > 2 else None)
            try:
                dyn = int(dyn_text) if dyn_text is not None else None
            except ValueError:
                dyn = 0
            found[args[0]] = (te, unet, dyn)
    return [(name, *values) for name, values in found.items()]


class JobNetworks:
    """The LoRAs of one job on one model: `patch_for(prompts)` per batch; `hashes` and
    `warnings` for the result."""

    def __init__(self, library: LoraLibrary | None, model: Any, default_multiplier: float,
                 enabled: bool = True, hypernetworks: HypernetworkLibrary | None = None,
                 memory: MemoryGuard | None = None) -> None:
        self.library = library
        self.memory = memory
        self.hypernetworks = hypernetworks
        self.model = model
        self.default_multiplier = default_multiplier
        self.enabled = enabled
        self.hashes: dict[str, str] = {}
        self.warnings: list[str] = []

    def _warn(self, text: str) -> None:
        if text not in self.warnings:
            log.warning("%s", text)
            self.warnings.append(text)

    def patch_for(self, prompts: Iterable[str]) -> ContextManager:
        """The batch's LoRAs and hypernetworks on the model while the block runs."""
        prompts = list(prompts)
        stack = contextlib.ExitStack()
        if self.enabled and self.library is not None:
            stack.enter_context(self._lora_patch(prompts))
        if self.enabled and self.hypernetworks is not None:
            stack.enter_context(self._hypernetwork_patch(prompts))
        return stack

    def _warn_missing(self, kind: str, name: str, folders: list[Path]) -> None:
        self._warn(f"{kind} {name!r} not found in {', '.join(map(str, folders))}; left out")

    def _hypernetwork_patch(self, prompts: list[str]) -> ContextManager:
        chosen = []
        for name, multiplier in hypernet_tags(prompts, self.default_multiplier):
            if multiplier != multiplier:
                self._warn(f"Hypernetwork {name!r}: its multiplier is not a number; left out")
                continue
            path = self.hypernetworks.find(name)
            if path is None:
                self._warn_missing("Hypernetwork", name, self.hypernetworks.folders)
                continue
            try:
                chosen.append((self.hypernetworks.network(path), multiplier))
            except HypernetworkError as error:
                self._warn(f"Hypernetwork {name!r} cannot be loaded ({error}); left out")
        if not chosen:
            return contextlib.nullcontext()
        return HypernetworkPatch(self.model.unet, chosen)

    def _lora_patch(self, prompts: list[str]) -> ContextManager:
        chosen, used = [], []
        for name, te, unet, dyn in lora_tags(prompts, self.default_multiplier):
            if te != te or unet != unet:         # NaN: a multiplier that is no number
                self._warn(f"Lora {name!r}: its multiplier is not a number; left out")
                continue
            if dyn is not None and dyn < 1:
                self._warn(f"Lora {name!r}: dyn must be a whole number of ranks, 1 or more; "
                           "left out")
                continue
            item = self.library.find(name)
            if item is None:
                self._warn_missing("Lora", name, self.library.folders)
                continue
            try:
                network = self.library.network(item, self.model).first_ranks(dyn)
                self.hashes[item.alias] = self.library.short_hash(item)
            except CheckpointLoadError as error:
                self._warn(f"Lora {name!r} cannot be loaded ({error.reason}); left out")
                continue
            except LoraError as error:
                self._warn(f"Lora {name!r} does not fit this model ({error}); left out")
                continue
            chosen.append((network, te, unet))
            used.append((item.path, item.path.stat().st_mtime_ns, te, unet, dyn,
                         str(self.model.device)))
        if not chosen:
            return contextlib.nullcontext()
        return LoraPatch(self.model, chosen,
                         weights=self.library.patched_weights(self.model, chosen, tuple(used),
                                                              self.memory))

    def infotext_value(self) -> str | None:
        """`Lora hashes`: "name: hash, name2: hash2"."""
        return ", ".join(f"{name}: {digest}" for name, digest in self.hashes.items()) or None
