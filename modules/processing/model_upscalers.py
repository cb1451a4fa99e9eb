"""The user's upscaler model files as entries of the `UpscalerRegistry` (Extras, hires fix, SD
upscale, `upscaler_for_img2img`, /sdapi/v1/upscalers): every file in models/ESRGAN,
models/RealESRGAN, models/SwinIR, models/Swin2SR, models/ScuNET, models/DAT and models/HAT
(and their --*-models-path flags), named as A1111 names them (the file name; A1111's own names
for the Real-ESRGAN, SwinIR, ScuNET and DAT releases), scale read from the weights. The
network is loaded on first use; one stays loaded. A file spandrel cannot read is left out with
a warning naming it.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from PIL import Image

from modules.engine.upscaler_models import UPSCALER_EXTENSIONS, Tiling, UpscalerModelError, \
    load_upscaler, upscale_image
from modules.processing.upscalers import UpscalerInfo, UpscalerRegistry

log = logging.getLogger(__name__)

#: A1111's names for the released files it knows (file stem → name)
RELEASE_NAMES = {
    "RealESRGAN_x4plus": "R-ESRGAN 4x+", "RealESRGAN_x4plus_anime_6B": "R-ESRGAN 4x+ Anime6B",
    "RealESRGAN_x2plus": "R-ESRGAN 2x+", "realesr-general-x4v3": "R-ESRGAN General 4xV3",
    "realesr-general-wdn-x4v3": "R-ESRGAN General WDN 4xV3",
    "realesr-animevideov3": "R-ESRGAN AnimeVideo",
    "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN": "SwinIR 4x",
    "scunet_color_real_gan": "ScuNET GAN", "scunet_color_real_psnr": "ScuNET PSNR",
    "DAT_x2": "DAT x2", "DAT_x3": "DAT x3", "DAT_x4": "DAT x4",
}
#: folder → the settings of its tiles (A1111's keys)
FOLDER_TILE_OPTIONS = {
    "ESRGAN": ("ESRGAN_tile", "ESRGAN_tile_overlap"),
    "RealESRGAN": ("ESRGAN_tile", "ESRGAN_tile_overlap"),
    "SwinIR": ("SWIN_tile", "SWIN_tile_overlap"), "Swin2SR": ("SWIN_tile", "SWIN_tile_overlap"),
    "HAT": ("SWIN_tile", "SWIN_tile_overlap"),
    "ScuNET": ("SCUNET_tile", "SCUNET_tile_overlap"),
    "DAT": ("DAT_tile", "DAT_tile_overlap"),
}


@dataclass(frozen=True)
class UpscalerFile:
    name: str
    path: Path
    folder_kind: str          # a key of FOLDER_TILE_OPTIONS
    scale: int
    architecture: str


def describe_file(path: Path, folder_kind: str, *, allow_unsafe_pickle: bool = False
                  ) -> UpscalerFile:
    """Name, scale and architecture of a file (the network is built on the CPU to read them)."""
    descriptor = load_upscaler(path, "cpu", allow_unsafe_pickle=allow_unsafe_pickle)
    return UpscalerFile(RELEASE_NAMES.get(path.stem, path.stem), path, folder_kind,
                        int(descriptor.scale), descriptor.architecture.name)


def scan_upscaler_files(folders: Iterable[tuple[str, Path]], *,
                        allow_unsafe_pickle: bool = False) -> list[UpscalerFile]:
    """Every readable model file of the folders ((kind, folder) pairs), in name order."""
    found: list[UpscalerFile] = []
    for kind, folder in folders:
        if not Path(folder).is_dir():
            continue
        for path in sorted(Path(folder).rglob("*")):
            if not path.is_file() or path.suffix.lower() not in UPSCALER_EXTENSIONS:
                continue
            try:
                found.append(describe_file(path, kind, allow_unsafe_pickle=allow_unsafe_pickle))
            except UpscalerModelError as error:
                log.warning("Upscaler model %s skipped: %s", path, error)
    return found


class LoadedUpscalers:
    """Loads a file's network on first use and keeps the last one (the device's)."""

    def __init__(self, device: torch.device | str = "cpu", *,
                 dtype: torch.dtype = torch.float32, allow_unsafe_pickle: bool = False) -> None:
        self.device = device
        self.dtype = dtype
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self._lock = threading.Lock()
        self._current: tuple[Path, Any] | None = None

    def get(self, path: Path):
        with self._lock:
            if self._current is not None and self._current[0] == path:
                return self._current[1]
            self._current = None                   # the previous network goes first
            descriptor = load_upscaler(path, self.device, dtype=self.dtype,
                                       allow_unsafe_pickle=self.allow_unsafe_pickle)
            self._current = (path, descriptor)
            return descriptor


def upscaler_entry(item: UpscalerFile, models: LoadedUpscalers,
                   tiling: Callable[[str], Tiling]) -> UpscalerInfo:
    def upscale(image: Image.Image, scale: float) -> Image.Image:
        return upscale_image(models.get(item.path), image, tiling(item.folder_kind))
    return UpscalerInfo(item.name, upscale, scale=float(item.scale), model_name=item.name,
                        model_path=str(item.path), max_passes=3)


def register_model_upscalers(registry: UpscalerRegistry, folders: Iterable[tuple[str, Path]],
                             options: Any, *, device: torch.device | str = "cpu",
                             dtype: torch.dtype = torch.float32,
                             allow_unsafe_pickle: bool = False) -> list[UpscalerFile]:
    """Add every readable file of `folders` to `registry` (a name already taken is skipped with
    a warning); the tiles follow the settings of the file's folder at each call; the networks
    run in `dtype` where their architecture allows (the device plan's: float16 on CUDA unless
    --no-half, float32 on the CPU)."""
    models = LoadedUpscalers(device, dtype=dtype, allow_unsafe_pickle=allow_unsafe_pickle)

    def tiling(kind: str) -> Tiling:
        size_key, overlap_key = FOLDER_TILE_OPTIONS[kind]
        return Tiling(int(options.get(size_key) or 0), int(options.get(overlap_key) or 0))

    added = []
    for item in scan_upscaler_files(folders, allow_unsafe_pickle=allow_unsafe_pickle):
        try:
            registry.register(upscaler_entry(item, models, tiling))
            added.append(item)
        except ValueError as error:
            log.warning("Upscaler model %s skipped: %s", item.path, error)
    return added

