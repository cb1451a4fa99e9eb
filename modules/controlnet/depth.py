"""Depth preprocessors on networks whose weights the user supplies: the files go in the annotator
folder (`models/ControlNet-annotators`, or `--controlnet-annotator-models-path`) under the names
and subfolders sd-webui-controlnet uses, so a folder copied from an A1111 install works. Nothing
is downloaded: a missing file is a message naming the folder and the file.

Depth Anything V2 and V1 run on transformers' `DepthAnythingForDepthEstimation`
(`modules/engine/depth_anything.py`), MiDaS DPT-Hybrid on its `DPTForDepthEstimation`
(`modules/engine/dpt_midas.py`), ZoeDepth on its `ZoeDepthForDepthEstimation`
(`modules/engine/zoedepth.py`). The map is grey depth, near = white.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from modules.controlnet.preprocessors import DetectedMap, Preprocessor, PreprocessorError, \
    resize_short_side
from modules.engine.checkpoint_io import CheckpointLoadError, read_state_dict


@dataclass(frozen=True)
class DepthWeights:
    subfolder: str                  # sd-webui-controlnet's folder for this annotator
    file_names: tuple[str, ...]     # the first one present is used (its default first)
    network: str                    # "depth_anything", "dpt_midas" or "zoedepth"
    version: int = 1                # Depth Anything 1 or 2


DEPTH_ANYTHING_V2 = DepthWeights(
    "depth_anything_v2", ("depth_anything_v2_vitl.safetensors", "depth_anything_v2_vitl.pth",
                          "depth_anything_v2_vitb.safetensors", "depth_anything_v2_vitb.pth",
                          "depth_anything_v2_vits.safetensors", "depth_anything_v2_vits.pth"),
    "depth_anything", 2)
DEPTH_ANYTHING = DepthWeights(
    "depth_anything", ("depth_anything_vitl14.pth", "depth_anything_vitb14.pth",
                       "depth_anything_vits14.pth"), "depth_anything", 1)
MIDAS = DepthWeights("midas", ("dpt_hybrid-midas-501f0c75.pt",), "dpt_midas")
ZOE = DepthWeights("zoedepth", ("ZoeD_M12_N.pt",), "zoedepth")


class DepthEstimators:
    """Finds and loads the depth networks on first use; one is kept loaded at a time (the
    large ones are over a GB)."""

    def __init__(self, folder: Path, *, allow_unsafe_pickle: bool = False) -> None:
        self.folder = Path(folder)
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self._lock = threading.Lock()
        self._loaded: tuple[Path, object] | None = None

    def find(self, weights: DepthWeights) -> Path:
        for name in weights.file_names:
            for candidate in (self.folder / weights.subfolder / name, self.folder / name):
                if candidate.is_file():
                    return candidate
        raise PreprocessorError(
            f"the depth model is missing: put {weights.file_names[0]} in "
            f"{self.folder / weights.subfolder} (no model is downloaded)")

    def model(self, weights: DepthWeights):
        from modules.engine.depth_anything import DepthModelError, load_depth_anything
        from modules.engine.dpt_midas import load_dpt_midas
        from modules.engine.zoedepth import load_zoedepth

        loaders = {"dpt_midas": load_dpt_midas, "zoedepth": load_zoedepth,
                   "depth_anything": lambda state: load_depth_anything(
                       state, version=weights.version)}

        path = self.find(weights)
        with self._lock:
            if self._loaded is not None and self._loaded[0] == path:
                return self._loaded[1]
            self._loaded = None
            try:
                state_dict = read_state_dict(path, allow_unsafe_pickle=self.allow_unsafe_pickle)
                model = loaders[weights.network](state_dict)
            except (CheckpointLoadError, DepthModelError) as error:
                raise PreprocessorError(f"cannot load {path}: {error}") from error
            self._loaded = (path, model)
            return model

    def preprocessor_run(self, weights: DepthWeights
                         ) -> Callable[[np.ndarray, int, float, float], DetectedMap]:
        def run(image: np.ndarray, resolution: int, a: float, b: float) -> DetectedMap:
            from modules.engine import depth_anything, dpt_midas, zoedepth

            estimate = {"depth_anything": depth_anything.estimate_depth,
                        "dpt_midas": dpt_midas.estimate_depth,
                        "zoedepth": zoedepth.estimate_depth}[weights.network]
            resized = resize_short_side(image, resolution)
            model = self.model(weights)
            with self._lock:
                depth = estimate(model, resized)
            if weights.network == "zoedepth":
                return DetectedMap(grey_metric_depth_map(depth))
            return DetectedMap(grey_depth_map(depth))
        return run

    def preprocessors(self) -> tuple[Preprocessor, ...]:
        return (Preprocessor("depth_midas", ("All", "Depth"), self.preprocessor_run(MIDAS),
                             aliases=("depth",)),
                Preprocessor("depth_zoe", ("All", "Depth"), self.preprocessor_run(ZOE)),
                Preprocessor("depth_anything_v2", ("All", "Depth"),
                             self.preprocessor_run(DEPTH_ANYTHING_V2)),
                Preprocessor("depth_anything", ("All", "Depth"),
                             self.preprocessor_run(DEPTH_ANYTHING)))


def grey_metric_depth_map(depth: np.ndarray) -> np.ndarray:
    """Metric depth (far = large) as sd-webui-controlnet draws ZoeDepth's: the 2nd to 85th
    percentile stretched and inverted, so near is white."""
    low, high = np.percentile(depth, 2), np.percentile(depth, 85)
    scaled = (depth - low) / (high - low) if high > low else np.zeros_like(depth)
    grey = np.clip((1.0 - scaled) * 255.0, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def grey_depth_map(depth: np.ndarray) -> np.ndarray:
    """Depth stretched to 0-255 (a flat prediction is black), as three equal channels."""
    low, high = float(depth.min()), float(depth.max())
    scaled = (depth - low) / (high - low) * 255.0 if high > low else np.zeros_like(depth)
    grey = np.clip(scaled, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)
