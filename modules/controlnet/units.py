"""A ControlNet unit as clients send it: sd-webui-controlnet's fields and defaults, read from a
dict (its API and the `webuiapi` client's `ControlNetUnit.to_dict()`), with the aliases and image
forms the extension accepts, and written to / read from the infotext ("ControlNet 0: Module:
canny, Model: …")."""
from __future__ import annotations

import base64
import binascii
import io
import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from PIL import Image

RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
RESIZE_MODE_ALIASES = {"Inner Fit (Scale to Fit)": "Crop and Resize",
                       "Outer Fit (Shrink to Fit)": "Resize and Fill",
                       "Scale to Fit (Inner Fit)": "Crop and Resize",
                       "Envelope (Outer Fit)": "Resize and Fill"}
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
#: the fields written to the infotext, in sd-webui-controlnet's order
INFOTEXT_FIELDS = ("module", "model", "weight", "resize_mode", "processor_res", "threshold_a",
                   "threshold_b", "guidance_start", "guidance_end", "pixel_perfect",
                   "control_mode")
#: a control image larger than this is refused before its pixels are decoded (the server's
#: default input-image limit; a control map is brought to the generation size anyway)
MAX_IMAGE_PIXELS = 64_000_000
_ALIASES = {"guidance": "guidance_end", "lowvram": "low_vram", "input_image": "image",
            "mask_image": "mask", "effective_region_mask": "mask"}


class UnitError(ValueError):
    """A unit field is wrong; the message names the unit and the field."""


@dataclass
class ControlNetUnit:
    enabled: bool = True        # a unit sent without "enabled" is meant to be used
    module: str = "none"
    model: str = "None"
    weight: float = 1.0
    image: Any = None           # base64 / data URL / PIL / ndarray / {"image", "mask"} / [i, m]
    mask: Any = None            # where the unit steers (white); none = everywhere
    resize_mode: str = "Crop and Resize"
    low_vram: bool = False
    processor_res: float = -1
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: str = "Balanced"
    save_detected_map: bool = True
    hr_option: str = "Both"

    @classmethod
    def from_value(cls, value: Any, index: int = 0) -> "ControlNetUnit":
        """A unit from what a client sent: a dict, an object with the fields (an extension's own
        unit class), or a unit already."""
        if isinstance(value, ControlNetUnit):
            return value
        if not isinstance(value, dict):
            value = {f.name: getattr(value, f.name) for f in fields(cls) if hasattr(value, f.name)}
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, item in value.items():
            key = _ALIASES.get(key, key)
            if key in known and item is not None:
                values[key] = item
        unit = cls(**values)
        unit.normalise(index)
        return unit

    def normalise(self, index: int) -> None:
        """Names for the enum fields (indices are accepted), numbers checked."""
        where = f"ControlNet unit {index}"
        self.resize_mode = _choice(self.resize_mode, RESIZE_MODES, f"{where}: resize_mode",
                                   RESIZE_MODE_ALIASES)
        self.control_mode = _choice(self.control_mode, CONTROL_MODES, f"{where}: control_mode")
        for name, low, high in (("weight", 0.0, 2.0), ("guidance_start", 0.0, 1.0),
                                ("guidance_end", 0.0, 1.0)):
            number = _number(getattr(self, name), f"{where}: {name}")
            if not low <= number <= high:
                raise UnitError(f"{where}: {name} must be between {low} and {high}, not {number}")
            setattr(self, name, number)
        for name in ("processor_res", "threshold_a", "threshold_b"):
            setattr(self, name, _number(getattr(self, name), f"{where}: {name}"))
        if self.guidance_start > self.guidance_end:
            raise UnitError(f"{where}: guidance_start ({self.guidance_start}) is after "
                            f"guidance_end ({self.guidance_end})")
        for name in ("enabled", "pixel_perfect", "low_vram", "save_detected_map"):
            setattr(self, name, _flag(getattr(self, name)))

    def input_image(self) -> tuple[Image.Image | None, Image.Image | None]:
        """(image, mask) from every form the extension accepts."""
        image, mask = self.image, self.mask
        if isinstance(image, (list, tuple)) and image:
            first = image[0]
            image, mask = (first.get("image"), first.get("mask")) if isinstance(first, dict) \
                else (image[0], image[1] if len(image) > 1 else mask)
        if isinstance(image, dict):
            image, mask = image.get("image"), image.get("mask", mask)
        return to_image(image, "image"), to_image(mask, "mask")

    def infotext(self) -> str:
        """sd-webui-controlnet's `ControlNet N` value: "Module: canny, Model: …, Weight: 1.0"."""
        def text(name: str) -> str:
            value = getattr(self, name)
            return str(float(value)) if isinstance(value, float) else str(value)
        return ", ".join(f"{name.replace('_', ' ').title()}: {text(name)}"
                         for name in INFOTEXT_FIELDS)

    @classmethod
    def from_infotext(cls, value: str) -> "ControlNetUnit":
        """The unit an infotext entry describes (pasting it back)."""
        values: dict[str, Any] = {}
        for part in value.split(", "):
            key, _, text = part.partition(": ")
            name = key.strip().lower().replace(" ", "_")
            if name in INFOTEXT_FIELDS:
                values[name] = _parse_scalar(text.strip())
        return cls.from_value(values)


def _choice(value: Any, names: tuple[str, ...], field: str,
            aliases: dict[str, str] | None = None) -> str:
    if isinstance(value, bool):
        raise UnitError(f"{field} must be one of {', '.join(names)}, not {value!r}")
    if isinstance(value, (int, float)) and float(value).is_integer() \
            and 0 <= int(value) < len(names):
        return names[int(value)]
    text = str(value)
    text = (aliases or {}).get(text, text)
    for name in names:
        if text.lower() == name.lower():
            return name
    raise UnitError(f"{field} must be one of {', '.join(names)} (or 0-{len(names) - 1}), "
                    f"not {value!r}")


def _number(value: Any, field: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UnitError(f"{field} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise UnitError(f"{field} must be a finite number")
    return number


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _parse_scalar(text: str) -> Any:
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def to_image(value: Any, field: str) -> Image.Image | None:
    """A PIL image from base64 (optionally a data URL), an ndarray or a PIL image."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, np.ndarray):
        return Image.fromarray(value.astype(np.uint8))
    if isinstance(value, str):
        data = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            image = Image.open(io.BytesIO(base64.b64decode(data, validate=False)))
            # the header is read, the pixels not yet: refuse a bomb before decoding it
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise UnitError(f"the unit's {field} is {image.width}x{image.height}: above "
                                f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels")
            return image.copy()
        except (binascii.Error, OSError, ValueError, Image.DecompressionBombError) as error:
            if isinstance(error, UnitError):
                raise
            raise UnitError(f"the unit's {field} is not a readable base64 image") from error
    raise UnitError(f"the unit's {field} has an unsupported type {type(value).__name__}")
