"""An extension's `metadata.ini` (A1111 1.9+): its canonical name, the extensions it requires,
and the order of its scripts relative to other scripts:

    [Extension]
    Name = sd-webui-example
    Requires = other-extension

    [scripts/example.py]
    Before = other-extension
    After = another-extension/scripts/thing.py

A Before / After entry names an extension (all its scripts) or one script as
`<extension>/scripts/<file>.py` (case-insensitive; comma or space separated). Entries in the
[Extension] section apply to every script of the extension. Scripts keep their usual order
(the app's, then built-in extensions', then users', each by file name) wherever the rules
allow; a rule that names something not loaded is ignored, and rules that contradict each
other (a cycle) are reported and leave those scripts in their usual order.
"""
from __future__ import annotations

import configparser
import heapq
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from modules.scripting.loader import ScriptFile

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.ini"
EXTENSION_SECTION = "Extension"


def _names(text: str) -> list[str]:
    return [name.lower() for name in re.split(r"[,\s]+", text or "") if name]


@dataclass
class ExtensionMetadata:
    canonical_name: str
    requires: list[str] = field(default_factory=list)
    #: section ("Extension" or "scripts/<file>.py", lower case) → (before, after)
    rules: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)

    def script_rules(self, file_name: str) -> tuple[list[str], list[str]]:
        """(Before, After) for one script file: its section's and the extension's."""
        before, after = [], []
        for section in (EXTENSION_SECTION.lower(), f"scripts/{file_name}".lower()):
            section_before, section_after = self.rules.get(section, ([], []))
            before += section_before
            after += section_after
        return before, after


def read_metadata(folder: Path) -> ExtensionMetadata:
    """The folder's metadata.ini (defaults when there is none or it cannot be read)."""
    metadata = ExtensionMetadata(folder.name.lower())
    path = folder / METADATA_FILE
    if not path.is_file():
        return metadata
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as error:
        log.warning("Ignoring %s: %s", path, error)
        return metadata
    if parser.has_section(EXTENSION_SECTION):
        metadata.canonical_name = (parser.get(EXTENSION_SECTION, "Name", fallback="")
                                   or folder.name).strip().lower()
        metadata.requires = _names(parser.get(EXTENSION_SECTION, "Requires", fallback=""))
    for section in parser.sections():
        metadata.rules[section.lower()] = (_names(parser.get(section, "Before", fallback="")),
                                           _names(parser.get(section, "After", fallback="")))
    return metadata


def _script_key(extension: str, path: Path) -> str:
    return f"{extension}/scripts/{path.name}".lower()


def order_script_files(files: Sequence[ScriptFile], metadata: dict[str, ExtensionMetadata]
                       ) -> tuple[list[ScriptFile], list[str]]:
    """`files` (in their usual order) ordered by the Before / After rules of `metadata` (by
    extension folder name); also the problems found (cycles), for the log and the UI."""
    canonical = {folder: meta.canonical_name for folder, meta in metadata.items()}
    owners: dict[str, list[int]] = {}        # extension or script key → file indices
    for index, file in enumerate(files):
        name = canonical.get(file.extension or "", (file.extension or "").lower())
        if file.extension is not None:
            owners.setdefault(name, []).append(index)
            owners.setdefault(_script_key(name, file.path), []).append(index)
    edges: dict[int, set[int]] = {index: set() for index in range(len(files))}
    for index, file in enumerate(files):
        meta = metadata.get(file.extension or "")
        if meta is None:
            continue
        before, after = meta.script_rules(file.path.name)
        for target in before:
            edges[index].update(i for i in owners.get(target, []) if i != index)
        for target in after:
            for other in owners.get(target, []):
                if other != index:
                    edges[other].add(index)
    indegree = {index: 0 for index in edges}
    for targets in edges.values():
        for target in targets:
            indegree[target] += 1
    ready = [index for index, degree in indegree.items() if degree == 0]
    heapq.heapify(ready)
    ordered: list[int] = []
    while ready:        # Kahn's algorithm, always taking the earliest file in the usual order
        index = heapq.heappop(ready)
        ordered.append(index)
        for target in edges[index]:
            indegree[target] -= 1
            if indegree[target] == 0:
                heapq.heappush(ready, target)
    problems = []
    if len(ordered) < len(files):
        stuck = sorted(set(range(len(files))) - set(ordered))
        problems.append("metadata.ini: the Before / After rules of these scripts form a "
                        "cycle and are ignored: " + ", ".join(str(files[i].path) for i in stuck))
        ordered += stuck
    return [files[index] for index in ordered], problems


def missing_requirements(metadata: dict[str, ExtensionMetadata],
                         enabled: Sequence[str]) -> list[str]:
    """"<extension> requires <other>, which is not installed or not enabled" messages."""
    loaded = {metadata[name].canonical_name if name in metadata else name.lower()
              for name in enabled}
    return [f"{folder} requires {required}, which is not installed or not enabled"
            for folder in enabled if folder in metadata
            for required in metadata[folder].requires if required not in loaded]
