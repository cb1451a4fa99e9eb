"""Which VAE a job decodes with, in A1111's order (a1111-compat.md §5.5):
1. `--vae-path`;
2. the `sd_vae` setting when it names a file and "Selected VAE overrides per-model preferences";
3. the checkpoint's own preference (its card's `vae`, in `<checkpoint>.json`);
4. a VAE beside the checkpoint (`<checkpoint>.vae.safetensors` / `.pt` / `.ckpt`), unless the
   setting names another file that overrides it;
5. the `sd_vae` file, or — "Automatic" with nothing found, or "None" — the checkpoint's own.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
AUTOMATIC = ("Automatic", "auto", "")


@dataclass(frozen=True)
class VaeChoice:
    path: str | None            # None: the checkpoint's own VAE
    name: str | None = None     # infotext "VAE"
    hash: str | None = None     # infotext "VAE hash" (10 hex)
    source: str = "checkpoint"  # why this one (for logs and the UI)


OWN = VaeChoice(None)


def checkpoint_preference(checkpoint_filename: str) -> str | None:
    """The `vae` a checkpoint's card names (A1111's user metadata), if any."""
    card = Path(checkpoint_filename).with_suffix(".json")
    try:
        value = json.loads(card.read_text(encoding="utf-8")).get("vae")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def resolve_vae(opts: Any, vaes: Any, paths: Any, checkpoint_filename: str) -> VaeChoice:
    """The VAE for a job on `checkpoint_filename`; FileNotFoundError when the setting names a
    file that is gone."""
    if getattr(paths, "vae_file", None):
        path = Path(paths.vae_file)
        if not path.is_file():
            raise FileNotFoundError(f"--vae-path {path} does not exist")
        return VaeChoice(str(path), path.name, None, "command line")
    choice = opts.get("sd_vae") or "Automatic"
    if choice == "None" or vaes is None:
        return OWN
    automatic = choice in AUTOMATIC
    overrides = bool(opts.get("sd_vae_overrides_per_model_preferences"))

    def from_setting() -> VaeChoice:
        found = vaes.find(choice)
        if found is None:
            raise FileNotFoundError(f"VAE '{choice}' not found in {paths.vae_dir}")
        return VaeChoice(found.filename, Path(found.filename).name, found.shorthash(),
                         "setting")

    if not automatic and overrides:
        return from_setting()
    preferred = checkpoint_preference(checkpoint_filename)
    if preferred == "None":
        return OWN
    if preferred and preferred not in AUTOMATIC:
        found = vaes.find(preferred)
        if found is not None:
            return VaeChoice(found.filename, Path(found.filename).name, found.shorthash(),
                             "checkpoint card")
        log.warning("VAE %r named by %s's card not found", preferred, checkpoint_filename)
    near = vaes.find_near_checkpoint(checkpoint_filename)
    if near is not None:
        return VaeChoice(near.filename, Path(near.filename).name, near.shorthash(),
                         "beside the checkpoint")
    return OWN if automatic else from_setting()
