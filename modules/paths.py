"""A1111 compatibility view: `modules.paths` — where the app and its data live."""
from __future__ import annotations

from pathlib import Path
from typing import Any

script_path = str(Path(__file__).resolve().parents[1])


def allowed_folder(text: str, what: str) -> Path:
    """Ours: the folder a user typed, if it lies inside the folders the server may read and
    write (the data folder and --gradio-allowed-path ones); ValueError naming it otherwise."""
    from modules import shared
    if shared._context is None:
        raise ValueError(f"{what}: the application is not started")
    return shared._context.paths.allowed_folder(text, what)


def __getattr__(name: str) -> Any:
    from modules import shared
    paths = shared._context.paths if shared._context is not None else None
    if paths is None:
        raise AttributeError(f"modules.paths.{name}: the application is not started")
    values = {"data_path": paths.data_dir, "models_path": paths.models_dir,
              "extensions_dir": paths.extensions_dir,
              "extensions_builtin_dir": paths.builtin_extensions_dir}
    if name not in values:
        raise AttributeError(f"module 'modules.paths' has no attribute {name!r}")
    return str(values[name])
