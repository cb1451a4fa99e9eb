"""A1111 compatibility view: `modules.scripts` as extensions import it (the Script base class,
AlwaysVisible, the hook argument objects, basedir()). The machinery is modules/scripting/."""
from __future__ import annotations

from pathlib import Path

from modules.scripting.script import (AlwaysVisible, MaskBlendArgs,  # noqa: F401 - re-exported
                                      PostprocessBatchListArgs, PostprocessImageArgs,
                                      PostProcessMaskOverlayArgs, PostSampleArgs, Script)

#: the app's root; while an extension's script file loads, basedir() answers its folder
_ROOT = Path(__file__).resolve().parents[1]
_current_basedir: Path | None = None


def basedir() -> str:
    """The folder of the extension whose script is loading (A1111's scripts.basedir())."""
    return str(_current_basedir or _ROOT)


def set_current_basedir(folder: Path | None) -> None:
    """Called by the loader around each script file (modules/scripting/loader.py)."""
    global _current_basedir
    _current_basedir = folder
