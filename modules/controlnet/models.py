"""The ControlNet model list: files in models/ControlNet (and --controlnet-dir), named as
sd-webui-controlnet names them ("control_v11p_sd15_canny [d14c016b]": the file's stem and its
legacy 8-hex hash), each with the control type its name says, and the loaded networks kept for
the next job. A file that cannot be loaded is reported with the reason, never a crash."""
from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
import yaml

from modules.engine.checkpoint_io import CheckpointLoadError, legacy_model_hash
from modules.engine.controlnet import ControlNetModel, controlnet_weights, \
    detect_controlnet_config, load_controlnet
from modules.engine.detection import DetectionError
from modules.engine.safetensors_stream import SafetensorsReader

log = logging.getLogger(__name__)

CONTROLNET_EXTENSIONS = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
#: control types guessed from a file name, first match wins (sd-webui-controlnet's filters)
CONTROL_TYPE_PATTERNS = (
    ("OpenPose", r"openpose|pose"), ("Depth", r"depth|zoe|midas"), ("Canny", r"canny"),
    ("Lineart", r"lineart"), ("Scribble", r"scribble|sketch"), ("SoftEdge", r"softedge|hed|pidi"),
    ("Segmentation", r"\bseg|_seg"), ("Normal", r"normal"), ("MLSD", r"mlsd"),
    ("Tile", r"tile"), ("Inpaint", r"inpaint"), ("Shuffle", r"shuffle"), ("IP2P", r"ip2p"),
    ("Threshold", r"threshold|silhouette|mask"),
)
LOADED_LIMIT = 2      # networks kept in memory between jobs


def control_type_of(name: str) -> str:
    lowered = name.lower()
    return next((label for label, pattern in CONTROL_TYPE_PATTERNS
                 if re.search(pattern, lowered)), "All")


def header_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be a ControlNet, from its header alone (names, shapes);
    None when it looks right (pickles are only checked when loaded)."""
    if path.suffix.lower() != ".safetensors":
        return None
    try:
        with SafetensorsReader(path) as reader:
            weights = controlnet_weights({key: reader.meta(key) for key in reader.keys()})
        detect_controlnet_config(weights)
    except CheckpointLoadError as error:
        return error.reason
    except DetectionError as error:
        return str(error)
    return None


def sidecar_params(path: Path) -> dict | None:
    """`model.params.control_stage_config.params` of the `.yaml` beside a ControlNet file (as
    sd-webui-controlnet reads it), or None; a broken sidecar is a CheckpointLoadError."""
    sidecar = path.with_suffix(".yaml")
    if not sidecar.is_file():
        return None
    try:
        document = yaml.safe_load(sidecar.read_text(encoding="utf-8")) or {}
        params = document["model"]["params"]["control_stage_config"]["params"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise CheckpointLoadError(path, f"cannot read {sidecar.name}: {error}") from error
    except (KeyError, TypeError):
        raise CheckpointLoadError(
            path, f"{sidecar.name} has no model.params.control_stage_config.params") from None
    if not isinstance(params, dict):
        raise CheckpointLoadError(path, f"{sidecar.name}: control_stage_config.params is not "
                                        "a mapping")
    return params


@dataclass
class ControlNetFile:
    path: Path
    name: str                   # "stem [hash8]", the API's model name
    control_type: str
    problem: str | None = None  # why it cannot be loaded, once tried

    @property
    def stem(self) -> str:
        return self.path.stem


class ControlNetRegistry:
    def __init__(self, folders: Iterable[Path], *, allow_unsafe_pickle: bool = False,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.folders = [Path(folder) for folder in folders]
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self.device, self.dtype = torch.device(device), dtype
        self._lock = threading.RLock()
        self._files: list[ControlNetFile] = []
        self._loaded: OrderedDict[Path, ControlNetModel] = OrderedDict()

    def refresh(self) -> None:
        found: dict[Path, ControlNetFile] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*"), key=lambda p: p.name.lower()):
                if path.suffix.lower() in CONTROLNET_EXTENSIONS and path.is_file():
                    name = f"{path.stem} [{legacy_model_hash(path)}]"
                    found.setdefault(path.resolve(), ControlNetFile(path, name,
                                                                    control_type_of(path.stem)))
        for item in found.values():
            item.problem = header_problem(item.path)
            if item.problem:
                log.warning("ControlNet %s cannot be used: %s", item.path, item.problem)
        with self._lock:
            self._files = list(found.values())

    def files(self) -> list[ControlNetFile]:
        with self._lock:
            return list(self._files)

    def names(self) -> list[str]:
        """The API's model_list: every file, loadable or not (the UI marks the others)."""
        return [item.name for item in self.files()]

    def choices(self) -> list[tuple[str, str]]:
        """(label, name) for dropdowns: a file that cannot be used says why in its label."""
        return [(item.name if not item.problem else f"{item.name} (unusable: {item.problem})",
                 item.name) for item in self.files()]

    def find(self, name: str | None) -> ControlNetFile | None:
        """By "stem [hash]", stem, or file name (what clients send)."""
        if not name or name == "None":
            return None
        wanted = re.sub(r"\s*\[[0-9a-fA-F]+\]$", "", name)
        for item in self.files():
            if name in (item.name, item.path.name) or wanted == item.stem:
                return item
        return None

    def load(self, item: ControlNetFile,
             ensure_room: Callable[[int, str], None] | None = None) -> ControlNetModel:
        """The network (cached); CheckpointLoadError for a file that cannot be loaded, which is
        remembered on the item so lists can say so. `ensure_room(bytes, what)` may refuse a
        network not yet loaded before it is read (the file's size bounds what reading takes)."""
        key = item.path.resolve()
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        if ensure_room is not None:
            ensure_room(item.path.stat().st_size, f"loading ControlNet {item.name}")
        try:
            model = load_controlnet(item.path, allow_unsafe_pickle=self.allow_unsafe_pickle,
                                    device=self.device, dtype=self.dtype,
                                    yaml_params=sidecar_params(item.path))
        except CheckpointLoadError as error:
            item.problem = error.reason
            log.warning("ControlNet %s cannot be loaded: %s", item.path, error.reason)
            raise
        item.problem = None
        with self._lock:
            self._loaded[key] = model
            while len(self._loaded) > LOADED_LIMIT:
                self._loaded.popitem(last=False)
        return model

    def unload(self) -> None:
        with self._lock:
            self._loaded.clear()
