"""The aesthetic embeddings folder (models/aesthetic_embeddings, --aesthetic_embeddings-dir):
list, read (once per file change) and create embeddings from a folder of pictures."""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import UnidentifiedImageError

from modules.engine.aesthetic_clip import (EMBEDDING_SUFFIX, AestheticError, image_embedding,
                                           read_aesthetic_embedding)
from modules.processing.training_create import TrainingInputError, file_name
from modules.processing.training_loop import IMAGE_SUFFIXES, read_image

NONE = "None"
SOURCE_SUFFIXES = (*IMAGE_SUFFIXES, ".gif", ".tif", ".tiff")
log = logging.getLogger(__name__)


class AestheticEmbeddings:
    def __init__(self, folder: Path, *, allow_unsafe_pickle: bool = False) -> None:
        self.folder = Path(folder)
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self._lock = threading.Lock()
        self._read: dict[Path, tuple[int, torch.Tensor]] = {}

    def names(self) -> list[str]:
        """"None" first, then the embeddings by name (the dropdown's choices)."""
        found = sorted(p.stem for p in self.folder.glob(f"*{EMBEDDING_SUFFIX}") if p.is_file()) \
            if self.folder.is_dir() else []
        return [NONE, *found]

    def load(self, name: str) -> torch.Tensor:
        """The unit-length embedding called `name`; AestheticError when there is none."""
        path = self.folder / f"{name}{EMBEDDING_SUFFIX}"
        if name == NONE or name not in self.names():
            raise AestheticError(f"no aesthetic embedding named '{name}' in {self.folder} "
                                 f"(there are: {', '.join(self.names()[1:]) or 'none'})")
        stamp = path.stat().st_mtime_ns
        with self._lock:
            cached = self._read.get(path)
            if cached is None or cached[0] != stamp:
                cached = (stamp, read_aesthetic_embedding(
                    path, allow_unsafe_pickle=self.allow_unsafe_pickle))
                self._read[path] = cached
            return cached[1]

    def create(self, name: str, source: Path, encode_images: Callable[[list], torch.Tensor], *,
               batch_size: int = 256, should_stop: Callable[[], bool] = lambda: False
               ) -> tuple[Path, int, list[str]]:
        """Write `name.pt`: the mean CLIP image features of the pictures in `source` (as the
        extension does; an existing file of that name is replaced). Returns the file, how many
        pictures went in, and the names of files that could not be read."""
        try:
            stem = file_name(name)
        except TrainingInputError as error:
            raise AestheticError(str(error)) from error
        if not source.is_dir():
            raise AestheticError(f"the source directory {source} does not exist")
        files = sorted(p for p in source.iterdir()
                       if p.is_file() and p.suffix.lower() in SOURCE_SUFFIXES)
        skipped: list[str] = []

        def pictures():
            for path in files:
                try:
                    yield read_image(path)
                except (OSError, UnidentifiedImageError, ValueError):
                    skipped.append(path.name)

        embedding, count = image_embedding(encode_images, pictures(),
                                           batch_size=max(1, int(batch_size)),
                                           should_stop=should_stop)
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{stem}{EMBEDDING_SUFFIX}"
        partial = target.with_suffix(".tmp")
        torch.save(embedding, partial)
        partial.replace(target)
        if skipped:
            log.warning("Aesthetic embedding %s: unreadable files left out: %s", stem, skipped)
        return target, count, skipped


def clip_image_encoder(ranker: Any) -> Callable[[list], torch.Tensor]:
    """Raw CLIP image features of a list of pictures with the interrogator's CLIP."""
    def encode(images: list) -> torch.Tensor:
        pixels = torch.stack([ranker.preprocess(image) for image in images])
        return ranker.model.encode_image(pixels.to(ranker.device, ranker.dtype))
    return encode
