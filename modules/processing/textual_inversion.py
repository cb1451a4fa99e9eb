"""The embeddings/ folder (recursive; --embeddings-dir) as a job and the API see it: each file
read once per change, sorted into those the loaded model can use (`loaded`) and those it cannot
(`skipped`: another width, e.g. an SD1.x embedding on SDXL); unreadable files are logged and
listed in `errors`. A job's encoder gets the usable ones as its vocabulary; `TI hashes` (A1111's
12 hex digits of the file's sha256) name those its prompts used.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from modules.engine.checkpoint_io import sha256_file
from modules.engine.textual_inversion import EMBEDDING_EXTENSIONS, Embedding, EmbeddingError, \
    EmbeddingVocabulary, read_embedding
from modules.engine.tokenizer import get_clip_tokenizer

log = logging.getLogger(__name__)


@dataclass
class EmbeddingSets:
    """The folder's embeddings for one model."""
    loaded: dict[str, Embedding] = field(default_factory=dict)
    skipped: dict[str, Embedding] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)     # file name → why it was not read


def model_encoders(model: Any) -> list[tuple[str, int]]:
    """(kind, width) of each text encoder a model conditions on."""
    return [(config.kind, config.width) for _, config in model.text_encoders]


class EmbeddingLibrary:
    def __init__(self, folders: Iterable[Path], *, allow_unsafe_pickle: bool = False) -> None:
        self.folders = [Path(folder) for folder in folders]
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self._lock = threading.Lock()
        self._read: dict[Path, tuple[tuple[int, int], Embedding | str]] = {}
        self._hashes: dict[tuple[Path, int], str] = {}

    def refresh(self) -> None:
        """Forget what was read (the next look reads every file again)."""
        with self._lock:
            self._read.clear()

    def _paths(self) -> list[Path]:
        return [path for folder in self.folders if folder.is_dir()
                for path in sorted(folder.rglob("*"))
                if path.is_file() and path.suffix.lower() in EMBEDDING_EXTENSIONS
                and not path.name.endswith(".preview.png")]

    def _embedding(self, path: Path) -> Embedding | str:
        """The file's embedding, or why it could not be read (kept while the file is unchanged)."""
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._read.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            result: Embedding | str = read_embedding(
                path, allow_unsafe_pickle=self.allow_unsafe_pickle)
        except EmbeddingError as error:
            result = str(error)
            log.warning("embedding %s skipped: %s", path, error)
        with self._lock:
            self._read[path] = (stamp, result)
        return result

    def sets_for(self, encoders: list[tuple[str, int]]) -> EmbeddingSets:
        """Every file, sorted for a model with these text encoders (first file of a name wins)."""
        sets = EmbeddingSets()
        for path in self._paths():
            embedding = self._embedding(path)
            if isinstance(embedding, str):
                sets.errors[path.name] = embedding
            elif embedding.name in sets.loaded or embedding.name in sets.skipped:
                continue
            elif embedding.fits(encoders):
                sets.loaded[embedding.name] = embedding
            else:
                sets.skipped[embedding.name] = embedding
        return sets

    def vocabulary_for(self, model: Any) -> EmbeddingVocabulary:
        tokenizer = get_clip_tokenizer()
        return EmbeddingVocabulary.build(self.sets_for(model_encoders(model)).loaded.values(),
                                         tokenizer.encode)

    def short_hash(self, embedding: Embedding) -> str | None:
        if embedding.path is None or not embedding.path.is_file():
            return None
        key = (embedding.path, embedding.path.stat().st_mtime_ns)
        with self._lock:
            known = self._hashes.get(key)
        if known is None:
            known = sha256_file(embedding.path)[:12]
            with self._lock:
                self._hashes[key] = known
        return known

    def infotext_value(self, used: Iterable[Embedding]) -> str | None:
        """`TI hashes`: "name: hash, …" (A1111 drops ':' and ',' from the names)."""
        entries = []
        for embedding in used:
            digest = self.short_hash(embedding)
            if digest:
                name = embedding.name.replace(":", "").replace(",", "")
                entries.append(f"{name}: {digest}")
        return ", ".join(entries) or None
