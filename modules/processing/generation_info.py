"""The infotext of one generated image, keys in A1111's fixed order (a1111-compat.md §5.2)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modules.processing.infotext import create_infotext
from modules.version import INFOTEXT_VERSION


@dataclass
class InfotextSource:
    """Per-job values the infotext is made of (per-image values are passed to `infotext_for`)."""
    steps: int
    sampler_name: str
    scheduler_label: str
    cfg_scale: float
    width: int
    height: int
    model_hash: str | None
    model_name: str | None
    vae_hash: str | None = None
    vae_name: str | None = None
    subseed_strength: float = 0.0
    seed_resize_from_w: int = -1
    seed_resize_from_h: int = -1
    denoising_strength: float | None = None
    clip_skip: int = 1
    rng: str = "GPU"
    tiling: bool = False
    face_restoration: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def generation_params(src: InfotextSource, options: Any, *, seed: int,
                      subseed: int) -> dict[str, Any]:
    """Ordered key → value; None values are dropped by create_infotext."""
    opt = options.get
    params: dict[str, Any] = {
        "Steps": src.steps,
        "Sampler": src.sampler_name,
        "Schedule type": src.scheduler_label,
        "CFG scale": src.cfg_scale,
        "Image CFG scale": None,     # fixed slots a mode fills through `extra` (edit models)
        "Seed": seed,
        "Face restoration": src.face_restoration,
        "Size": f"{src.width}x{src.height}",
        "Model hash": src.model_hash if opt("add_model_hash_to_info") else None,
        "Model": src.model_name if opt("add_model_name_to_info") else None,
        "VAE hash": src.vae_hash if opt("add_vae_hash_to_info") else None,
        "VAE": src.vae_name if opt("add_vae_name_to_info") else None,
        "Variation seed": subseed if src.subseed_strength else None,
        "Variation seed strength": src.subseed_strength or None,
        "Seed resize from": (f"{src.seed_resize_from_w}x{src.seed_resize_from_h}"
                             if src.seed_resize_from_w > 0 and src.seed_resize_from_h > 0 else None),
        "Denoising strength": src.denoising_strength,
        "Conditional mask weight": None,   # inpainting models, filled through `extra`
        "Clip skip": src.clip_skip if src.clip_skip > 1 else None,
        "ENSD": None,                      # the sampler reports it through `extra`
        "RNG": src.rng if src.rng != "GPU" else None,
        "Tiling": "True" if src.tiling else None,
    }
    # a key that has a fixed slot above keeps that slot (dicts keep the first insertion position)
    for key, value in src.extra.items():
        if key not in params or params[key] is None:
            params[key] = value
    params["Version"] = INFOTEXT_VERSION if opt("add_version_to_infotext") else None
    return params


def infotext_for(src: InfotextSource, options: Any, *, prompt: str, negative_prompt: str,
                 seed: int, subseed: int) -> str:
    return create_infotext(prompt=prompt, negative_prompt=negative_prompt,
                           params=generation_params(src, options, seed=seed, subseed=subseed))
