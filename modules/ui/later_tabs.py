"""Tabs whose feature lands in a later issue: Checkpoint Merger and Train say so in one line;
Extensions lists the folders of `extensions/` and `extensions-builtin/` read-only, as A1111's
"Installed" list does (installing and enabling come with the extension issue)."""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import gradio as gr

if TYPE_CHECKING:
    from modules.app.context import AppContext

CHECKPOINT_MERGER_NOTICE = ("Checkpoint Merger: merging checkpoints (weighted sum, add difference) "
                            "arrives with the model-merging feature.")
TRAIN_NOTICE = ("Train: textual inversion and hypernetwork training arrive with the training "
                "feature.")
EXTENSIONS_NOTICE = ("Extensions: installing, updating and enabling extensions arrive with the "
                     "extension feature; the folders found are listed below.")


@dataclass(frozen=True)
class ExtensionFolder:
    name: str
    path: Path
    builtin: bool


def find_extension_folders(user_dir: Path, builtin_dir: Path) -> list[ExtensionFolder]:
    """Every non-hidden folder of extensions/ and extensions-builtin/, sorted by name."""
    found: list[ExtensionFolder] = []
    for directory, builtin in ((Path(user_dir), False), (Path(builtin_dir), True)):
        if not directory.is_dir():
            continue
        found.extend(ExtensionFolder(entry.name, entry, builtin)
                     for entry in sorted(directory.iterdir(), key=lambda p: p.name.lower())
                     if entry.is_dir() and not entry.name.startswith("."))
    return found


def extensions_table_html(folders: Sequence[ExtensionFolder]) -> str:
    if not folders:
        return "<p>No extensions installed.</p>"
    rows = "".join(f"<tr><td>{html.escape(folder.name)}</td>"
                   f"<td>{'built-in' if folder.builtin else 'user'}</td>"
                   f"<td><code>{html.escape(str(folder.path))}</code></td></tr>"
                   for folder in folders)
    return ("<table id='extensions'><tr><th>Extension</th><th>Kind</th><th>Folder</th></tr>"
            f"{rows}</table>")


def build_checkpoint_merger_tab(ctx: "AppContext") -> None:
    gr.Markdown(CHECKPOINT_MERGER_NOTICE, elem_id="modelmerger_notice")


def build_train_tab(ctx: "AppContext") -> None:
    gr.Markdown(TRAIN_NOTICE, elem_id="train_notice")


def build_extensions_tab(ctx: "AppContext") -> None:
    gr.Markdown(EXTENSIONS_NOTICE, elem_id="extensions_notice")
    paths = ctx.paths
    table = gr.HTML(extensions_table_html(
        find_extension_folders(paths.extensions_dir, paths.builtin_extensions_dir)),
        elem_id="extensions_installed_html")
    refresh = gr.Button("Check for extensions", elem_id="extensions_refresh")
    refresh.click(lambda: extensions_table_html(
        find_extension_folders(paths.extensions_dir, paths.builtin_extensions_dir)),
        outputs=[table], api_visibility="private", queue=False)
