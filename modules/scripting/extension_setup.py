"""What extensions do before the app starts: `preload.py` adds command-line flags
(`preload(parser)`, before the flags are parsed) and `install.py` prepares the extension (run
at launch in a process of its own, skipped with --skip-install), as in A1111.

Which extensions: those that would load (modules/scripting/host.py), judged from the flags and
the `disabled_extensions` / `disable_all_extensions` settings in config.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

from modules.scripting.host import find_extensions

log = logging.getLogger(__name__)
INSTALL_TIMEOUT_SECONDS = 600


def _stored_settings(config_file: Path) -> dict:
    try:
        stored = json.loads(config_file.read_text(encoding="utf-8"))
        return stored if isinstance(stored, dict) else {}
    except (OSError, ValueError):
        return {}


def enabled_extension_folders(args: argparse.Namespace, root: Path) -> list[Path]:
    from modules.app.paths import Paths

    paths = Paths.from_args(args, root)
    stored = _stored_settings(paths.config_file)
    if getattr(args, "disable_all_extensions", False):
        mode = "all"
    elif getattr(args, "disable_extra_extensions", False):
        mode = "extra"
    else:
        mode = str(stored.get("disable_all_extensions") or "none")
    extensions = find_extensions(paths.extensions_dir, paths.builtin_extensions_dir,
                                 disabled=stored.get("disabled_extensions") or [], disable=mode)
    return [extension.path for extension in extensions if extension.enabled]


def run_preloads(parser: argparse.ArgumentParser, folders: list[Path]) -> list[str]:
    """Call `preload(parser)` of each folder's preload.py; the messages of those that failed."""
    failures = []
    for folder in folders:
        script = folder / "preload.py"
        if not script.is_file():
            continue
        try:
            spec = importlib.util.spec_from_file_location(f"_preload.{folder.name}", script)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            preload = getattr(module, "preload", None)
            if callable(preload):
                preload(parser)
        except Exception as error:  # noqa: BLE001 - a broken extension must not stop the app
            log.error("Error running %s\n%s", script, "".join(traceback.format_exception(error)))
            failures.append(f"{script}: {type(error).__name__}: {error}")
    return failures


def run_installers(folders: list[Path], root: Path) -> list[str]:
    """Run each folder's install.py with this Python, in the folder, the app importable; the
    messages of those that failed (the extension still loads; its scripts may then fail)."""
    failures = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for folder in folders:
        script = folder / "install.py"
        if not script.is_file():
            continue
        log.info("Running %s", script)
        try:
            result = subprocess.run([sys.executable, str(script)], cwd=folder, env=env,
                                    capture_output=True, text=True,
                                    timeout=INSTALL_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            failures.append(f"{script}: did not finish within {INSTALL_TIMEOUT_SECONDS} s")
            continue
        if result.returncode != 0:
            log.error("%s failed (exit %d):\n%s%s", script, result.returncode, result.stdout,
                      result.stderr)
            failures.append(f"{script}: exit code {result.returncode}")
    return failures
