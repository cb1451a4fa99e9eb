"""Localizations (A1111's `localizations/*.json`): a JSON object mapping the UI's English texts
to another language, from the app's `localizations/` folder and every extension's. The one the
"localization" setting names is put into the page as `window.localization`, and
javascript/localization.js translates the texts, labels, placeholders and titles with it as the
page draws them. Choosing another takes effect at the next start, as in A1111."""
from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

NONE = "None"


def available_localizations(root: Path, extension_dirs: Sequence[Path]) -> dict[str, Path]:
    """Name (the file's stem) → file; an extension's file of the same name wins."""
    found: dict[str, Path] = {}
    for folder in [root, *extension_dirs]:
        directory = folder / "localizations"
        if directory.is_dir():
            for path in sorted(directory.glob("*.json")):
                found[path.stem] = path
    return found


def localization_choices(root: Path, extension_dirs: Sequence[Path]) -> list[str]:
    return [NONE, *available_localizations(root, extension_dirs)]


def localization_script(name: str | None, root: Path, extension_dirs: Sequence[Path]) -> str:
    """The <script> that gives the page its translations; "" for None or an unknown name."""
    if not name or name == NONE:
        return ""
    path = available_localizations(root, extension_dirs).get(name)
    if path is None:
        log.warning("Localization %r not found; the UI stays in English", name)
        return ""
    try:
        texts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        log.warning("Cannot read localization %s: %s", path, error)
        return ""
    if not isinstance(texts, dict):
        log.warning("Localization %s is not a JSON object; ignored", path)
        return ""
    payload = json.dumps({str(k): str(v) for k, v in texts.items()}, ensure_ascii=False)
    payload = payload.replace("</", "<\\/")       # a "</script" inside must not end the element
    return (f"<script data-source=\"{html.escape(path.name)}\">"
            f"window.localization = {payload};</script>")
