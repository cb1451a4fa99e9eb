"""Requests → engine calls (our package), and A1111 compatibility view: the names community
extensions import from `modules.processing` (`StableDiffusionProcessingTxt2Img`,
`StableDiffusionProcessingImg2Img`, `StableDiffusionProcessing`, `Processed`, `process_images`)
resolve lazily here, so importing the package pulls in neither torch nor the UI."""
from __future__ import annotations

from typing import Any

_COMPAT_NAMES = {
    "StableDiffusionProcessing": "modules.processing.processing_objects",
    "StableDiffusionProcessingTxt2Img": "modules.processing.processing_objects",
    "StableDiffusionProcessingImg2Img": "modules.processing.processing_objects",
    "process_images": "modules.processing.processing_objects",
    "fix_seed": "modules.processing.processing_objects",
    "get_fixed_seed": "modules.processing.processing_objects",
    "Processed": "modules.processing.processing_objects",
}


def __getattr__(name: str) -> Any:
    module_name = _COMPAT_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'modules.processing' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(module_name), name)
