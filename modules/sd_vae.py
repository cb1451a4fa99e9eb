"""A1111 compatibility view: `modules.sd_vae` — `vae_dict` (the standalone VAEs: file name →
path), and the `sd_vae` setting's special choices `unspecified` ("Automatic") and "None"."""
from typing import Any

unspecified = "Automatic"


def __getattr__(name: str) -> Any:
    if name == "vae_dict":
        from modules import shared
        context = getattr(shared, "_context", None)
        items = context.vaes.list() if context is not None else []
        return {item.model_name: item.filename for item in items}
    raise AttributeError(f"module 'modules.sd_vae' has no attribute {name!r}")
