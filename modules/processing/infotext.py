"""Infotext ("generation parameters"): writing it in A1111's key order and quoting, and reading it
back into A1111's flat dict (a1111-compat.md §5.1–§5.4, §3.5)."""
from __future__ import annotations

import json
import logging
import math
import re
from typing import TYPE_CHECKING, Any, Iterable

from packaging import version as packaging_version

from modules.engine.prompt_parser import parse_prompt_attention

if TYPE_CHECKING:
    from modules.processing.styles import StyleDatabase

log = logging.getLogger(__name__)

PARAM_PATTERN = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
IMAGE_SIZE_PATTERN = re.compile(r"^(\d+)x(\d+)$")
NEGATIVE_PREFIX = "Negative prompt:"


def quote(value: Any) -> Any:
    """Values containing ',', ':' or a newline are written as JSON strings; others as they are."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return value
    return json.dumps(value, ensure_ascii=False)


def unquote(text: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def create_infotext(*, prompt: str, negative_prompt: str, params: dict[str, Any]) -> str:
    """`<prompt>\\nNegative prompt: <neg>\\n<k: v, …>`; None values are skipped, a value equal to
    its key is written bare (e.g. "Inpaint not masked")."""
    params_line = ", ".join(
        key if key == value else f"{key}: {quote(value)}"
        for key, value in params.items() if value is not None)
    negative_text = f"\n{NEGATIVE_PREFIX} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative_text}\n{params_line}".strip()


def ordered_generation_params(
        *, steps: int, sampler_name: str, cfg_scale: float, seed: int, width: int, height: int,
        schedule_type: str | None = None, image_cfg_scale: float | None = None,
        face_restoration: str | None = None, model_hash: str | None = None,
        model_name: str | None = None, fp8_weight: str | None = None,
        cache_fp16_weight_for_lora: bool | None = None, vae_hash: str | None = None,
        vae_name: str | None = None, subseed: int | None = None, subseed_strength: float = 0.0,
        seed_resize_from: tuple[int, int] = (-1, -1), denoising_strength: float | None = None,
        conditional_mask_weight: float | None = None, clip_skip: int = 1, ensd: int = 0,
        token_merging_ratio: float = 0.0, token_merging_ratio_hr: float = 0.0,
        init_image_hash: str | None = None, rng: str = "GPU", tiling: bool = False,
        extra_params: dict[str, Any] | None = None, version: str | None = None,
        user: str | None = None) -> dict[str, Any]:
    """The params dict in A1111's fixed order (§5.2). Values that A1111 leaves out are None here
    (create_infotext skips them). `ensd`: pass 0 when the sampler does not use it.
    Extra keys that name a fixed slot replace that slot's value; the rest follow in order."""
    resize_w, resize_h = seed_resize_from
    params: dict[str, Any] = {
        "Steps": steps,
        "Sampler": sampler_name,
        "Schedule type": schedule_type,
        "CFG scale": cfg_scale,
        "Image CFG scale": image_cfg_scale,
        "Seed": seed,
        "Face restoration": face_restoration,
        "Size": f"{width}x{height}",
        "Model hash": model_hash,
        "Model": model_name,
        "FP8 weight": fp8_weight,
        "Cache FP16 weight for LoRA": cache_fp16_weight_for_lora if fp8_weight else None,
        "VAE hash": vae_hash,
        "VAE": vae_name,
        "Variation seed": subseed if subseed_strength else None,
        "Variation seed strength": subseed_strength if subseed_strength else None,
        "Seed resize from": f"{resize_w}x{resize_h}" if resize_w > 0 and resize_h > 0 else None,
        "Denoising strength": denoising_strength,
        "Conditional mask weight": conditional_mask_weight,
        "Clip skip": clip_skip if clip_skip > 1 else None,
        "ENSD": ensd if ensd else None,
        "Token merging ratio": token_merging_ratio or None,
        "Token merging ratio hr": token_merging_ratio_hr or None,
        "Init image hash": init_image_hash,
        "RNG": rng if rng and rng != "GPU" else None,
        "Tiling": "True" if tiling else None,
    }
    params.update(extra_params or {})
    params["Version"] = version
    params["User"] = user
    return params


def _prompt_uses_emphasis(text: str) -> bool:
    """Whether some attention run of the prompt has a weight other than 1 (BREAK aside)."""
    return any(weight not in (1.0, -1.0) for _, weight in parse_prompt_attention(text))


def _version(text: Any) -> packaging_version.Version | None:
    if not isinstance(text, str):
        return None
    match = re.match(r"([^-]+-[^-]+)-.*", text)   # "v1.7.0-225-gabcdef" → "v1.7.0-225"
    if match:
        text = match.group(1)
    try:
        return packaging_version.parse(text)
    except packaging_version.InvalidVersion:
        return None


def _apply_backcompat(params: dict[str, Any]) -> None:
    """Infotexts written by older A1111 versions get the compatibility switches they imply."""
    found = _version(params.get("Version"))
    if found is None:
        return
    if found < packaging_version.parse("1.6.0"):
        if "[" in params.get("Prompt", ""):
            params["Old prompt editing timelines"] = True
        if params.get("Sampler", "") in ("DDIM", "PLMS"):
            params["Pad conds v0"] = True
    if found < packaging_version.parse("v1.7.0-225"):
        params["Downcast alphas_cumprod"] = True
    if found < packaging_version.parse("1.8.0") and params.get("Refiner"):
        params["Refiner switch by sampling steps"] = True


def old_hires_fix_first_pass_dimensions(width: int, height: int) -> tuple[int, int]:
    """A1111 ≤1.0 first pass: scaled to about 512×512 pixels, rounded up to multiples of 64."""
    scale = math.sqrt(512 * 512 / (width * height))
    return math.ceil(scale * width / 64) * 64, math.ceil(scale * height / 64) * 64


def _restore_old_hires_params(params: dict[str, Any], use_old_hires_fix_width_height: bool) -> None:
    if use_old_hires_fix_width_height:
        hires_width = int(params.get("Hires resize-1", 0))
        hires_height = int(params.get("Hires resize-2", 0))
        if hires_width and hires_height:
            params["Size-1"], params["Size-2"] = hires_width, hires_height
            return
    first_width, first_height = params.get("First pass size-1"), params.get("First pass size-2")
    if first_width is None or first_height is None:
        return
    first_width, first_height = int(first_width), int(first_height)
    width, height = int(params.get("Size-1", 512)), int(params.get("Size-2", 512))
    if first_width == 0 or first_height == 0:
        first_width, first_height = old_hires_fix_first_pass_dimensions(width, height)
    params["Size-1"], params["Size-2"] = first_width, first_height
    params["Hires resize-1"], params["Hires resize-2"] = width, height


_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("Hires sampler", "Use same sampler"),
    ("Hires schedule type", "Use same scheduler"), ("Hires checkpoint", "Use same checkpoint"),
    ("Hires prompt", ""), ("Hires negative prompt", ""), ("Mask mode", "Inpaint masked"),
    ("Masked content", "original"), ("Inpaint area", "Whole picture"), ("Masked area padding", 32),
)
_LATE_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("RNG", "GPU"), ("Schedule type", "Automatic"), ("Schedule max sigma", 0),
    ("Schedule min sigma", 0), ("Schedule rho", 0), ("VAE Encoder", "Full"),
    ("VAE Decoder", "Full"), ("FP8 weight", "Disable"),
)


def split_infotext(text: str) -> tuple[str, str, str]:
    """(prompt, negative prompt, params line); the last line counts as params only when it holds
    at least 3 `key: value` pairs."""
    *lines, last_line = text.strip().split("\n")
    if len(PARAM_PATTERN.findall(last_line)) < 3:
        lines.append(last_line)
        last_line = ""
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    for line in lines:
        line = line.strip()
        if line.startswith(NEGATIVE_PREFIX):
            negative_lines.append(line[len(NEGATIVE_PREFIX):].strip())
        elif negative_lines:
            negative_lines.append(line)
        else:
            prompt_lines.append(line)
    return "\n".join(prompt_lines), "\n".join(negative_lines), last_line


def parse_generation_parameters(text: str, *, skip_fields: Iterable[str] = (),
                                auto_backcompat: bool = True,
                                use_old_hires_fix_width_height: bool = False,
                                style_db: "StyleDatabase | None" = None,
                                infotext_styles: str = "Apply if any") -> dict[str, Any]:
    """Infotext → A1111's flat dict ("Prompt", "Negative prompt", "Steps": "20", "Size-1": "512" …).
    Values stay strings except the defaults A1111 fills in as numbers/bools."""
    prompt, negative_prompt, params_line = split_infotext(text)
    result: dict[str, Any] = {}
    for key, value in PARAM_PATTERN.findall(params_line):
        value = unquote(value) if value[:1] == '"' and value[-1:] == '"' else value
        size = IMAGE_SIZE_PATTERN.match(value) if isinstance(value, str) else None
        if size is not None:
            result[f"{key}-1"], result[f"{key}-2"] = size.group(1), size.group(2)
        else:
            result[key] = value

    if style_db is not None and infotext_styles != "Ignore":
        found, prompt, negative_prompt = style_db.extract_styles_from_prompt(prompt, negative_prompt)
        result["Styles array"] = found

    result["Prompt"] = prompt
    result["Negative prompt"] = negative_prompt
    result.setdefault("Clip skip", "1")
    hypernet = result.get("Hypernet")
    if hypernet is not None:
        result["Prompt"] += f"<hypernet:{hypernet}:{result.get('Hypernet strength', '1.0')}>"
    if "Hires resize-1" not in result:
        result["Hires resize-1"] = 0
        result["Hires resize-2"] = 0
    for key, default in _DEFAULTS:
        result.setdefault(key, default)
    _restore_old_hires_params(result, use_old_hires_fix_width_height)
    for key, default in _LATE_DEFAULTS:
        result.setdefault(key, default)
    if "Cache FP16 weight for LoRA" not in result and result["FP8 weight"] != "Disable":
        result["Cache FP16 weight for LoRA"] = False
    if "Emphasis" not in result and (_prompt_uses_emphasis(prompt)
                                     or _prompt_uses_emphasis(negative_prompt)):
        result["Emphasis"] = "Original"
    result.setdefault("Refiner switch by sampling steps", False)
    if auto_backcompat:
        _apply_backcompat(result)
    for key in skip_fields:
        result.pop(key, None)
    return result


# infotext label → (API field, type), a1111-compat.md §3.5
_API_FIELDS: dict[str, tuple[str, type]] = {
    "Prompt": ("prompt", str), "Negative prompt": ("negative_prompt", str),
    "Steps": ("steps", int), "Sampler": ("sampler_name", str), "Schedule type": ("scheduler", str),
    "CFG scale": ("cfg_scale", float), "Image CFG scale": ("image_cfg_scale", float),
    "Seed": ("seed", int), "Variation seed": ("subseed", int),
    "Variation seed strength": ("subseed_strength", float),
    "Seed resize from-1": ("seed_resize_from_w", int),
    "Seed resize from-2": ("seed_resize_from_h", int),
    "Size-1": ("width", int), "Size-2": ("height", int), "Batch size": ("batch_size", int),
    "Styles array": ("styles", list), "Denoising strength": ("denoising_strength", float),
    "Hires upscale": ("hr_scale", float), "Hires upscaler": ("hr_upscaler", str),
    "Hires steps": ("hr_second_pass_steps", int), "Hires resize-1": ("hr_resize_x", int),
    "Hires resize-2": ("hr_resize_y", int), "Hires checkpoint": ("hr_checkpoint_name", str),
    "Hires sampler": ("hr_sampler_name", str), "Hires schedule type": ("hr_scheduler", str),
    "Hires prompt": ("hr_prompt", str), "Hires negative prompt": ("hr_negative_prompt", str),
    "Refiner": ("refiner_checkpoint", str), "Refiner switch at": ("refiner_switch_at", float),
    "Mask blur": ("mask_blur", int), "Masked area padding": ("inpaint_full_res_padding", int),
}
_MASKED_CONTENT = {"fill": 0, "original": 1, "latent noise": 2, "latent nothing": 3}


def _cast(value: Any, kind: type) -> Any:
    if kind is int:
        return int(float(value))
    if kind is float:
        return float(value)
    if kind is list:
        return list(value) if isinstance(value, (list, tuple)) else [str(value)]
    return str(value)


def infotext_to_api_fields(params: dict[str, Any]) -> dict[str, Any]:
    """A parsed infotext → txt2img/img2img request fields with the API's types. Values that do
    not convert are left out (and logged)."""
    fields: dict[str, Any] = {}
    for label, (api_name, kind) in _API_FIELDS.items():
        if label not in params:
            continue
        try:
            fields[api_name] = _cast(params[label], kind)
        except (TypeError, ValueError):
            log.warning("infotext: cannot use %s=%r as %s", label, params[label], kind.__name__)
    if "Inpaint area" in params:
        fields["inpaint_full_res"] = params["Inpaint area"] == "Only masked"
    if params.get("Masked content") in _MASKED_CONTENT:
        fields["inpainting_fill"] = _MASKED_CONTENT[params["Masked content"]]
    if "Mask mode" in params:
        fields["inpainting_mask_invert"] = int(params["Mask mode"] == "Inpaint not masked")
    fields["enable_hr"] = "Denoising strength" in params and any(
        key in params for key in ("Hires upscale", "Hires upscaler", "Hires resize-1"))
    return fields
