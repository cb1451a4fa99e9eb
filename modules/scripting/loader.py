"""Loading script files: every `*.py` of the built-in `scripts/` folder and of each enabled
extension's `scripts/` folder, as A1111 does (one module per file, its Script subclasses
collected, the callbacks it registers while loading remembered as its own).

A file that fails to import is logged with its path and traceback and recorded in
`LoadedScripts.errors`; the others load.
"""
from __future__ import annotations

import importlib.util
import logging
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterable

from modules.scripting.callbacks import CallbackRegistry
from modules.scripting.script import Script

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScriptFile:
    path: Path
    basedir: Path           # the extension's folder (or the app's root for built-in scripts)
    extension: str | None   # the extension's name; None for built-in scripts


@dataclass
class ScriptClass:
    script_class: type
    file: ScriptFile


@dataclass
class LoadedScripts:
    scripts: list[ScriptClass] = field(default_factory=list)
    postprocessing: list[ScriptClass] = field(default_factory=list)
    modules: dict[Path, ModuleType] = field(default_factory=dict)
    errors: dict[Path, str] = field(default_factory=dict)


def script_files(folders: Iterable[tuple[Path, Path, str | None]]) -> list[ScriptFile]:
    """(scripts folder, basedir, extension name) → its `*.py` files, sorted by name."""
    files = []
    for folder, basedir, extension in folders:
        if folder.is_dir():
            files.extend(ScriptFile(path, basedir, extension)
                         for path in sorted(folder.glob("*.py")) if path.is_file())
    return files


def load_script_files(files: Iterable[ScriptFile], callbacks: CallbackRegistry, *,
                      postprocessing_base: type | None = None,
                      on_basedir: Callable[[Path | None], None] = lambda basedir: None,
                      ) -> LoadedScripts:
    """Import each file (as module `<stem>`, like A1111's script_loading) and collect the Script
    (and ScriptPostprocessing) subclasses it defines. `on_basedir(dir)` runs around each import
    so `scripts.basedir()` answers the file's extension folder while it loads."""
    loaded = LoadedScripts()
    for file in files:
        on_basedir(file.basedir)
        try:
            with callbacks.loading(str(file.path)):
                module = _import_file(file)
        except Exception as error:  # noqa: BLE001 - one broken extension must not stop the app
            message = "".join(traceback.format_exception(error))
            log.error("Error loading script %s\n%s", file.path, message)
            loaded.errors[file.path] = f"{type(error).__name__}: {error}"
            continue
        finally:
            on_basedir(None)
        loaded.modules[file.path] = module
        for value in list(vars(module).values()):
            if not isinstance(value, type) or value.__module__ != module.__name__:
                continue
            if issubclass(value, Script) and value is not Script:
                loaded.scripts.append(ScriptClass(value, file))
            elif postprocessing_base is not None and issubclass(value, postprocessing_base) \
                    and value is not postprocessing_base:
                loaded.postprocessing.append(ScriptClass(value, file))
    return loaded


def _import_file(file: ScriptFile) -> ModuleType:
    """Import one script file. As in A1111, the extension's folder is on sys.path while it
    loads (so `from scripts.other_file import …` finds its siblings). The module is registered
    under a name of its own (`_scripts.<extension>.<stem>`) that shadows no real module, so
    dataclasses and pickling inside it work."""
    name = f"_scripts.{file.extension or 'builtin'}.{file.path.stem}"
    spec = importlib.util.spec_from_file_location(name, file.path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file.path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    saved_path = list(sys.path)
    if str(file.basedir) not in sys.path:
        sys.path.insert(0, str(file.basedir))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path[:] = saved_path
    return module
