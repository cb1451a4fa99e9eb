"""Units → the job's ControlNet patch: each enabled unit's image is preprocessed, its map brought
to the generation size with the unit's resize mode, its network loaded and checked against the
checkpoint, and the detected maps kept to be returned with the images."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from modules.controlnet.models import ControlNetRegistry
from modules.controlnet.preprocessors import PreprocessorError, PreprocessorRegistry
from modules.controlnet.units import RESIZE_MODES, ControlNetUnit, UnitError
from modules.engine.checkpoint_io import CheckpointLoadError
from modules.engine.controlnet import ControlNetPatch, ControlUnitPatch, fits_unet
from modules.engine.configs import UNetConfig
from modules.processing.resize import resize_image

FAMILY_NAMES = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}


@dataclass
class PreparedUnit:
    index: int
    unit: ControlNetUnit
    model_name: str
    patch: ControlUnitPatch
    detected_map: Image.Image
    message: str | None = None


def pixel_perfect_resolution(image: Image.Image, width: int, height: int,
                             resize_mode: str) -> int:
    """sd-webui-controlnet's "Pixel Perfect": the preprocessor resolution at which the map needs
    no resampling for the generation size."""
    scale_y, scale_x = height / image.height, width / image.width
    scale = min(scale_y, scale_x) if resize_mode == RESIZE_MODES[2] else max(scale_y, scale_x)
    return int(round(scale * min(image.width, image.height)))


def map_to_hint(detected: Image.Image) -> torch.Tensor:
    """[1, 3, H, W] in [0, 1]."""
    array = np.asarray(detected.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def enabled_units(values: Sequence[Any]) -> list[tuple[int, ControlNetUnit]]:
    """The script's arguments (one per unit) → the enabled units with their indices."""
    units = []
    for index, value in enumerate(values):
        if value is None or value == {} or isinstance(value, (bool, int, float, str)):
            continue        # an unused slot (A1111 fills missing args with defaults)
        unit = ControlNetUnit.from_value(value, index)
        if unit.enabled:
            units.append((index, unit))
    return units


def detect(unit: ControlNetUnit, image: Image.Image, preprocessors: PreprocessorRegistry,
           *, width: int, height: int, index: int = 0):
    """The unit's preprocessor on `image` at its resolution (pixel perfect when asked)."""
    preprocessor = preprocessors.get(unit.module)
    if preprocessor is None:
        raise UnitError(f"ControlNet unit {index}: unknown module {unit.module!r}; available: "
                        f"{', '.join(preprocessors.names())}")
    resolution = unit.processor_res
    if unit.pixel_perfect:
        resolution = pixel_perfect_resolution(image, width, height, unit.resize_mode)
    # the values in force (a -1 "default" resolved), as the infotext records them
    unit.processor_res, unit.threshold_a, unit.threshold_b = preprocessor.defaults(
        resolution, unit.threshold_a, unit.threshold_b)
    try:
        return preprocessor(np.asarray(image.convert("RGB")), unit.processor_res,
                            unit.threshold_a, unit.threshold_b)
    except PreprocessorError as error:
        raise UnitError(f"ControlNet unit {index}: {unit.module}: {error}") from error


def prepare_units(values: Sequence[Any], *, registry: ControlNetRegistry,
                  preprocessors: PreprocessorRegistry, unet: UNetConfig, width: int, height: int,
                  default_image: Image.Image | None = None,
                  ensure_room: Callable[[int, str], None] | None = None) -> list[PreparedUnit]:
    """Every enabled unit made ready; UnitError (the API's 422) names what is wrong.
    `ensure_room` may refuse loading a network that does not fit in memory."""
    prepared = []
    for index, unit in enabled_units(values):
        image, mask = unit.input_image()
        image = image if image is not None else default_image
        if image is None:
            raise UnitError(f"ControlNet unit {index} has no image (send \"image\" as base64)")
        item = registry.find(unit.model)
        if item is None:
            available = ", ".join(registry.names()) or f"none (put models in "\
                f"{', '.join(str(f) for f in registry.folders)})"
            raise UnitError(f"ControlNet unit {index}: model {unit.model!r} not found; "
                            f"available: {available}")
        detected = detect(unit, image, preprocessors, width=width, height=height, index=index)
        detected_map = resize_image(RESIZE_MODES.index(unit.resize_mode),
                                    Image.fromarray(detected.image), width, height)
        try:
            network = registry.load(item, ensure_room)
        except CheckpointLoadError as error:
            raise UnitError(f"ControlNet unit {index}: model {item.name} cannot be loaded: "
                            f"{error.reason}") from error
        if not fits_unet(network.control_config, unet):
            family = network.control_config.family
            raise UnitError(f"ControlNet unit {index}: {item.name} is a "
                            f"{FAMILY_NAMES.get(family, family)} ControlNet; it does not fit "
                            "the loaded checkpoint")
        region = None
        if mask is not None:
            mask = resize_image(RESIZE_MODES.index(unit.resize_mode), mask.convert("L"), width,
                                height)
            region = torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255.0)[None, None]
        patch = ControlUnitPatch(network, map_to_hint(detected_map), weight=unit.weight,
                                 guidance_start=unit.guidance_start,
                                 guidance_end=unit.guidance_end, control_mode=unit.control_mode,
                                 region=region)
        unit.model = item.name
        prepared.append(PreparedUnit(index, unit, item.name, patch, detected_map,
                                     detected.message))
    return prepared


def job_patch(prepared: list[PreparedUnit]) -> ControlNetPatch | None:
    return ControlNetPatch([item.patch for item in prepared]) if prepared else None
