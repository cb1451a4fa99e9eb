"""A1111 compatibility view: `modules.sd_models` — the checkpoints as the app lists them
(`checkpoints_list`: title → info), `get_closest_checkpoint_match`, `select_checkpoint`,
`reload_model_weights` (a switch on the job worker)."""
from typing import Any

from modules.scripting.a1111_functions import (checkpoints_list as _checkpoints_list,  # noqa: F401
                                               get_closest_checkpoint_match,
                                               reload_model_weights, select_checkpoint)


def __getattr__(name: str) -> Any:
    if name == "checkpoints_list":
        return _checkpoints_list()
    if name == "checkpoint_aliases":
        return {alias: info for info in _checkpoints_list().values()
                for alias in (info.title, info.name, info.model_name, info.shorthash) if alias}
    raise AttributeError(f"module 'modules.sd_models' has no attribute {name!r}")
