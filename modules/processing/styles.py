"""Prompt styles from A1111's styles.csv files (columns name, prompt, negative_prompt; §6.2).

Several files may be given (--styles-file, repeatable); each style remembers its file, and saving
rewrites every file with its own styles, so styles from other files are never lost.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

log = logging.getLogger(__name__)

CSV_FIELDS = ("name", "prompt", "negative_prompt")
PROMPT_PLACEHOLDER = "{prompt}"


@dataclass(frozen=True)
class PromptStyle:
    name: str
    prompt: str = ""
    negative_prompt: str = ""
    path: Path | None = None


def merge_prompts(style_text: str, prompt: str) -> str:
    """A style with `{prompt}` wraps the prompt; otherwise the two are joined with ", "."""
    if PROMPT_PLACEHOLDER in style_text:
        return style_text.replace(PROMPT_PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


def apply_styles_to_prompt(prompt: str, styles: Sequence[PromptStyle]) -> str:
    for style in styles:
        prompt = merge_prompts(style.prompt, prompt)
    return prompt


def apply_negative_styles_to_prompt(prompt: str, styles: Sequence[PromptStyle]) -> str:
    for style in styles:
        prompt = merge_prompts(style.negative_prompt, prompt)
    return prompt


def _strip_style_text(style_text: str, prompt: str) -> tuple[bool, str]:
    """Undo `merge_prompts`: (matched, prompt without the style)."""
    prompt_stripped, style_stripped = prompt.strip(), style_text.strip()
    if PROMPT_PLACEHOLDER in style_stripped:
        left, _, right = style_stripped.partition(PROMPT_PLACEHOLDER)
        if prompt_stripped.startswith(left) and prompt_stripped.endswith(right) \
                and len(prompt_stripped) >= len(left) + len(right):
            return True, prompt_stripped[len(left):len(prompt_stripped) - len(right)]
        return False, prompt
    if prompt_stripped.endswith(style_stripped):
        rest = prompt_stripped[:len(prompt_stripped) - len(style_stripped)]
        return True, rest[:-2] if rest.endswith(", ") else rest
    return False, prompt


def extract_styles_from_prompt(prompt: str, negative_prompt: str,
                               styles: Iterable[PromptStyle]) -> tuple[list[str], str, str]:
    """Names of the styles whose texts end (or wrap) both prompts, in application order, and the
    prompts with those texts removed (for reading infotext back)."""
    remaining = [s for s in styles if s.prompt or s.negative_prompt]
    found: list[str] = []
    while True:
        for style in remaining:
            matched, new_prompt = _strip_style_text(style.prompt, prompt)
            if not matched:
                continue
            matched, new_negative = _strip_style_text(style.negative_prompt, negative_prompt)
            if not matched:
                continue
            prompt, negative_prompt = new_prompt, new_negative
            remaining.remove(style)
            found.append(style.name)
            break
        else:
            break
    return list(reversed(found)), prompt, negative_prompt


class StyleDatabase:
    """Styles of one or more csv files; the first file receives new styles."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        self._lock = threading.Lock()
        self.styles: dict[str, PromptStyle] = {}
        self.reload()

    @property
    def default_path(self) -> Path | None:
        return self.paths[0] if self.paths else None

    def reload(self) -> None:
        styles: dict[str, PromptStyle] = {}
        for path in self.paths:
            for style in self._read(path):
                styles.setdefault(style.name, style)   # the first file wins a duplicate name
        with self._lock:
            self.styles = styles

    @staticmethod
    def _read(path: Path) -> list[PromptStyle]:
        if not path.is_file():
            return []
        styles = []
        try:
            with open(path, encoding="utf-8-sig", newline="") as file:
                for row in csv.DictReader(file, skipinitialspace=True):
                    name = (row.get("name") or "").strip()
                    if not name:
                        continue
                    # very old files call the prompt column "text"
                    prompt = row.get("prompt") if "prompt" in row else row.get("text")
                    styles.append(PromptStyle(name, prompt or "", row.get("negative_prompt") or "",
                                              path))
        except (OSError, csv.Error, UnicodeDecodeError) as error:
            log.warning("Cannot read styles file %s: %s", path, error)
        return styles

    def names(self) -> list[str]:
        with self._lock:
            return list(self.styles)

    def get(self, name: str) -> PromptStyle | None:
        with self._lock:
            return self.styles.get(name)

    def _selected(self, names: Sequence[str] | None) -> list[PromptStyle]:
        with self._lock:
            selected = []
            for name in names or ():
                if name in self.styles:
                    selected.append(self.styles[name])
                else:
                    log.warning("Style '%s' not found; ignored", name)
            return selected

    def apply_styles_to_prompt(self, prompt: str, names: Sequence[str] | None) -> str:
        return apply_styles_to_prompt(prompt, self._selected(names))

    def apply_negative_styles_to_prompt(self, prompt: str, names: Sequence[str] | None) -> str:
        return apply_negative_styles_to_prompt(prompt, self._selected(names))

    def extract_styles_from_prompt(self, prompt: str, negative_prompt: str
                                   ) -> tuple[list[str], str, str]:
        with self._lock:
            styles = list(self.styles.values())
        return extract_styles_from_prompt(prompt, negative_prompt, styles)

    def set_style(self, style: PromptStyle) -> None:
        """Add or replace a style (kept in its old file, else `style.path`, else the first file)."""
        with self._lock:
            old = self.styles.get(style.name)
            path = (old.path if old else None) or style.path or self.default_path
            self.styles[style.name] = PromptStyle(style.name, style.prompt, style.negative_prompt,
                                                  path)

    def delete_style(self, name: str) -> None:
        with self._lock:
            self.styles.pop(name, None)

    def save(self) -> None:
        """Rewrite every file with its styles (atomically: temp file + os.replace)."""
        with self._lock:
            by_path: dict[Path, list[PromptStyle]] = {path: [] for path in self.paths}
            for style in self.styles.values():
                by_path.setdefault(style.path or self.default_path, []).append(style)
        for path, styles in by_path.items():
            if path is None or (not styles and not path.exists()):
                continue
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
            writer.writeheader()
            for style in styles:
                writer.writerow({"name": style.name, "prompt": style.prompt,
                                 "negative_prompt": style.negative_prompt})
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(path.name + ".tmp")
            temp.write_text(buffer.getvalue(), encoding="utf-8-sig")
            os.replace(temp, path)
