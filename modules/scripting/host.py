"""The app's scripts: which extensions are enabled, loading their script files and the built-in
`scripts/` folder, and the txt2img / img2img runners built from them (A1111's load_scripts).

Order, as in A1111: the app's own `scripts/` first, then `extensions-builtin/*`, then
`extensions/*`, each set by folder name, moved where an extension's metadata.ini says a script
loads before or after another (modules/scripting/extension_metadata.py).
`--disable-all-extensions` loads no extension, `--disable-extra-extensions` only the built-in
ones; the setting `disabled_extensions` lists the folders the user switched off.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from modules.scripting.callbacks import CallbackRegistry
from modules.scripting.extension_metadata import (missing_requirements, order_script_files,
                                                  read_metadata)
from modules.scripting.loader import LoadedScripts, load_script_files, script_files
from modules.scripting.postprocessing_scripts import PostprocessingScripts, ScriptPostprocessing
from modules.scripting.runner import ScriptRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Extension:
    name: str
    path: Path
    is_builtin: bool
    enabled: bool


def find_extensions(user_dir: Path, builtin_dir: Path, *, disabled: Iterable[str] = (),
                    disable: str = "none") -> list[Extension]:
    """Every non-hidden folder of extensions-builtin/ then extensions/ (by name), with whether
    it loads: `disable` is "none", "extra" (only built-in ones load) or "all"."""
    switched_off = set(disabled)
    found = []
    for folder, is_builtin in ((builtin_dir, True), (user_dir, False)):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir(), key=lambda item: item.name.lower()):
            if not path.is_dir() or path.name.startswith("."):
                continue
            enabled = path.name not in switched_off and disable != "all" and \
                not (disable == "extra" and not is_builtin)
            found.append(Extension(path.name, path, is_builtin, enabled))
    return found


@dataclass
class ScriptHost:
    callbacks: CallbackRegistry
    extensions: list[Extension] = field(default_factory=list)
    loaded: LoadedScripts = field(default_factory=LoadedScripts)
    txt2img: ScriptRunner = field(default_factory=lambda: ScriptRunner([], is_img2img=False))
    img2img: ScriptRunner = field(default_factory=lambda: ScriptRunner([], is_img2img=True))
    #: the Extras steps extensions add (scripts_postprocessing.ScriptPostprocessing)
    postprocessing: PostprocessingScripts = field(default_factory=lambda: PostprocessingScripts([]))
    #: metadata.ini problems: missing required extensions, contradicting order rules
    metadata_problems: list[str] = field(default_factory=list)

    def runner(self, is_img2img: bool) -> ScriptRunner:
        return self.img2img if is_img2img else self.txt2img

    def infotext_pasted(self, infotext: str, params: dict) -> None:
        """Extensions' on_infotext_pasted: they may edit `params`, the parsed infotext."""
        self.callbacks.run("infotext_pasted", infotext, params)

    @property
    def errors(self) -> list[str]:
        """Files that failed to load and scripts that failed to start, for the UI and the log."""
        return [f"{path}: {message}" for path, message in self.loaded.errors.items()] + \
            self.txt2img.load_errors + self.img2img.load_errors + \
            self.postprocessing.load_errors + self.metadata_problems


def load_script_host(app_scripts_dir: Path, extensions: list[Extension],
                     callbacks: CallbackRegistry, *,
                     on_basedir: Callable[[Path | None], None] = lambda folder: None,
                     ) -> ScriptHost:
    """Load the scripts of the app and of every enabled extension, and build both runners."""
    enabled = [extension for extension in extensions if extension.enabled]
    folders = [(app_scripts_dir, app_scripts_dir.parent, None)]
    folders += [(extension.path / "scripts", extension.path, extension.name)
                for extension in enabled]
    metadata = {extension.name: read_metadata(extension.path) for extension in enabled}
    files, problems = order_script_files(script_files(folders), metadata)
    problems += missing_requirements(metadata, [extension.name for extension in enabled])
    for problem in problems:
        log.warning("%s", problem)
    loaded = load_script_files(files, callbacks, on_basedir=on_basedir,
                               postprocessing_base=ScriptPostprocessing)
    host = ScriptHost(callbacks, list(extensions), loaded,
                      ScriptRunner(loaded.scripts, is_img2img=False),
                      ScriptRunner(loaded.scripts, is_img2img=True),
                      PostprocessingScripts(loaded.postprocessing), problems)
    log.info("Scripts: %d loaded from %d extension(s) (%d failed)", len(loaded.scripts),
             sum(extension.enabled for extension in extensions), len(host.errors))
    return host
