"""ControlNet, built in: the model list (`models.py`), preprocessors (`preprocessors.py`), units
as clients send them (`units.py`), units → the job's UNet patch (`apply.py`) and the
`/controlnet/*` routes (`modules/api/routes_controlnet.py`). The always-on script that reads the
units is `scripts/controlnet.py`; the network and the patch are `modules/engine/controlnet.py`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from modules.controlnet.models import ControlNetRegistry
from modules.controlnet.depth import DepthEstimators
from modules.controlnet.preprocessors import PREPROCESSORS, PreprocessorRegistry

#: sd-webui-controlnet's API version this build answers to (GET /controlnet/version)
API_VERSION = 2
DEFAULT_UNIT_COUNT = 3


@dataclass
class ControlNetService:
    models: ControlNetRegistry
    preprocessors: PreprocessorRegistry = field(default_factory=PreprocessorRegistry)
    unit_count: int = DEFAULT_UNIT_COUNT
    #: refuses a network that does not fit in memory before it is read: (bytes, what) → None
    #: or InsufficientMemoryError
    ensure_room: Callable[[int, str], None] | None = None

    @classmethod
    def for_folders(cls, folders: Iterable[Path], *, annotators_dir: Path | None = None,
                    allow_unsafe_pickle: bool = False, unit_count: int = DEFAULT_UNIT_COUNT,
                    ensure_room: Callable[[int, str], None] | None = None
                    ) -> "ControlNetService":
        """The models in `folders`; the weight-free preprocessors, and with `annotators_dir`
        those whose weights the user puts there (depth)."""
        registry = ControlNetRegistry(folders, allow_unsafe_pickle=allow_unsafe_pickle)
        registry.refresh()
        preprocessors = PREPROCESSORS
        if annotators_dir is not None:
            estimators = DepthEstimators(annotators_dir, allow_unsafe_pickle=allow_unsafe_pickle)
            preprocessors = preprocessors + estimators.preprocessors()
        return cls(registry, PreprocessorRegistry(preprocessors), unit_count=unit_count,
                   ensure_room=ensure_room)
