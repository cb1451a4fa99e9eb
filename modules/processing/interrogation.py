"""Interrogation (A1111's "Interrogate CLIP" / "Interrogate DeepBooru", /sdapi/v1/interrogate):
describe an image as a prompt from the user's own weights.

- "clip": a BLIP caption (a transformers-format BLIP folder in models/BLIP) followed by the words
  of each category list that CLIP (a checkpoint file in models/interrogate, or the
  --clip-models-path folder) ranks best. The lists are the `*.txt` files of models/interrogate
  (A1111's artists / flavors / mediums / movements files work as they are; `name.topN.txt` gives
  N matches); without any, the short lists shipped beside this module are used.
- "deepdanbooru": the tags DeepDanbooru's model-resnet_custom_v3.pt (models/torch_deepdanbooru)
  scores above the threshold, formatted as A1111 formats them.

Absent weights give an `InterrogatorMissingError` that names the folder and the file expected.
Loaded networks stay in memory for the next call.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from modules.engine.checkpoint_io import CheckpointLoadError, read_weights_file
from modules.engine.clip_interrogator import BlipCaptioner, ClipRanker, InterrogatorModelError
from modules.engine.deepdanbooru import DeepDanbooruError, build_deepdanbooru

MODELS = ("clip", "deepdanbooru")
BUILTIN_CATEGORIES = Path(__file__).with_name("interrogate_categories")
CLIP_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
DEEPBOORU_FILE = "model-resnet_custom_v3.pt"
TOP_N = re.compile(r"\.top(\d+)$")
ESCAPED = re.compile(r"([\\()])")


class InterrogatorMissingError(LookupError):
    """The weights of the asked interrogator are not installed (the message says where)."""


class InterrogationError(ValueError):
    """Installed weights that cannot be loaded (the message names the file)."""


@dataclass(frozen=True)
class Category:
    name: str
    top: int
    items: tuple[str, ...]


def read_categories(folders: list[Path], *, limit: int = 0,
                    skip: frozenset[str] = frozenset()) -> list[Category]:
    """The category lists of the first folder that has `*.txt` files, by name."""
    for folder in folders:
        files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
        if not files:
            continue
        categories = []
        for path in files:
            match = TOP_N.search(path.stem)
            name = TOP_N.sub("", path.stem)
            if name in skip:
                continue
            lines = [line.strip() for line in path.read_text(encoding="utf-8",
                                                             errors="replace").splitlines()]
            items = tuple(line for line in lines if line)
            categories.append(Category(name, int(match.group(1)) if match else 1,
                                       items[:limit] if limit > 0 else items))
        return categories
    return []


def format_tags(probabilities: dict[str, float], options: Any) -> str:
    """A1111's DeepBooru text: tags above the threshold (no `rating:` ones), sorted by name or
    by score, filtered, with spaces / escaped brackets / ranks as the settings say."""
    threshold = float(options.get("interrogate_deepbooru_score_threshold") or 0)
    kept = {tag: score for tag, score in probabilities.items()
            if score >= threshold and not tag.startswith("rating:")}
    ordered = sorted(kept) if options.get("deepbooru_sort_alpha") \
        else sorted(kept, key=lambda tag: -kept[tag])
    filtered = {tag.strip().replace(" ", "_")
                for tag in str(options.get("deepbooru_filter_tags") or "").split(",")}
    words = []
    for tag in ordered:
        if tag in filtered:
            continue
        text = tag.replace("_", " ") if options.get("deepbooru_use_spaces") else tag
        if options.get("deepbooru_escape"):
            text = ESCAPED.sub(r"\\\1", text)
        if options.get("interrogate_return_ranks"):
            text = f"({text}:{kept[tag]:.3f})"
        words.append(text)
    return ", ".join(words)


class Interrogators:
    """The interrogators of the user's weights folders, loaded on first use."""

    def __init__(self, *, blip_dir: Path, clip_dir: Path, deepbooru_dir: Path, options: Any,
                 categories_dir: Path | None = None, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, allow_unsafe_pickle: bool = False) -> None:
        self.blip_dir, self.clip_dir, self.deepbooru_dir = blip_dir, clip_dir, deepbooru_dir
        self.categories_dir = categories_dir or clip_dir
        self.options = options
        self.device, self.dtype = device, dtype
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[Path, Any]] = {}

    # -- where the weights are -------------------------------------------------------------
    def blip_folder(self) -> Path | None:
        """models/BLIP itself when it holds a transformers model, else its first subfolder
        that does."""
        candidates = [self.blip_dir, *sorted(p for p in self.blip_dir.glob("*") if p.is_dir())] \
            if self.blip_dir.is_dir() else []
        return next((p for p in candidates if (p / "config.json").is_file()), None)

    def clip_file(self) -> Path | None:
        files = sorted(p for p in self.clip_dir.glob("*")
                       if p.is_file() and p.suffix.lower() in CLIP_SUFFIXES) \
            if self.clip_dir.is_dir() else []
        return files[0] if files else None

    def deepbooru_file(self) -> Path | None:
        preferred = self.deepbooru_dir / DEEPBOORU_FILE
        if preferred.is_file():
            return preferred
        files = sorted(p for p in self.deepbooru_dir.glob("*")
                       if p.is_file() and p.suffix.lower() in (".pt", ".pth")) \
            if self.deepbooru_dir.is_dir() else []
        return files[0] if files else None

    def missing(self, model: str) -> str | None:
        """Why `model` cannot run (the folder and file it needs), or None when it can."""
        if model == "deepdanbooru":
            if self.deepbooru_file() is None:
                return (f"DeepBooru weights are not installed: put {DEEPBOORU_FILE} in "
                        f"{self.deepbooru_dir}")
            return None
        needs = []
        if self.blip_folder() is None:
            needs.append(f"a BLIP captioning model in transformers' format (config.json, "
                         f"model.safetensors, tokenizer and preprocessor files, e.g. "
                         f"Salesforce/blip-image-captioning-base) in {self.blip_dir}")
        if self.clip_file() is None:
            needs.append(f"a CLIP checkpoint (e.g. open_clip's ViT-L-14 "
                         f"open_clip_pytorch_model.bin, or a .safetensors) in {self.clip_dir}")
        return ("CLIP interrogator weights are not installed: put " + "; and ".join(needs)) \
            if needs else None

    # -- loading ---------------------------------------------------------------------------
    def _get(self, kind: str, path: Path, load) -> Any:
        with self._lock:
            cached = self._loaded.get(kind)
            if cached is not None and cached[0] == path:
                return cached[1]
            try:
                model = load(path)
            except (InterrogatorModelError, DeepDanbooruError, CheckpointLoadError) as error:
                raise InterrogationError(f"{path.name} cannot be loaded: "
                                         f"{getattr(error, 'reason', error)}") from error
            self._loaded[kind] = (path, model)
            return model

    def _blip(self) -> BlipCaptioner:
        folder = self.blip_folder()
        return self._get("blip", folder,
                         lambda path: BlipCaptioner(path, self.device, self.dtype))

    def clip_model(self) -> ClipRanker:
        """The CLIP of models/interrogate (--clip-models-path), loaded once: also what
        aesthetic gradients use. InterrogationError naming the folder when there is none."""
        if self.clip_file() is None:
            raise InterrogationError(f"no CLIP checkpoint (OpenAI / open_clip layout, e.g. "
                                     f"ViT-L-14, as .safetensors or .pt) in {self.clip_dir}")
        return self._clip()

    def _clip(self) -> ClipRanker:
        return self._get("clip", self.clip_file(), lambda path: ClipRanker(
            read_weights_file(path, allow_unsafe_pickle=self.allow_unsafe_pickle), self.device, self.dtype))

    def _deepbooru(self):
        def load(path: Path):
            return build_deepdanbooru(read_weights_file(path, allow_unsafe_pickle=self.allow_unsafe_pickle)).to(self.device, self.dtype)
        return self._get("deepdanbooru", self.deepbooru_file(), load)

    # -- interrogating ---------------------------------------------------------------------
    def interrogate(self, image: Image.Image, model: str = "clip") -> str:
        problem = self.missing(model)
        if problem is not None:
            raise InterrogatorMissingError(problem)
        image = image.convert("RGB")
        if model == "deepdanbooru":
            return format_tags(self._deepbooru().probabilities(image), self.options)
        return self._clip_prompt(image)

    def caption(self, image: Image.Image) -> str:
        """BLIP's caption alone (preprocessing for training uses it without CLIP's ranking)."""
        if self.blip_folder() is None:
            raise InterrogatorMissingError(f"no BLIP captioning model in {self.blip_dir}")
        options = self.options
        return self._blip().caption(
            image.convert("RGB"), num_beams=int(options.get("interrogate_clip_num_beams") or 1),
            min_length=int(options.get("interrogate_clip_min_length") or 1),
            max_length=int(options.get("interrogate_clip_max_length") or 48))

    def _clip_prompt(self, image: Image.Image) -> str:
        options = self.options
        caption = self.caption(image)
        ranker = self._clip()
        features = ranker.image_features(image)
        skip = frozenset(name.strip() for name in
                         str(options.get("interrogate_clip_skip_categories") or "").split(",")
                         if name.strip())
        categories = read_categories([self.categories_dir, BUILTIN_CATEGORIES],
                                     limit=int(options.get("interrogate_clip_dict_limit") or 0),
                                     skip=skip)
        parts = [caption] if caption else []
        for category in categories:
            for match, score in ranker.rank(features, list(category.items), category.top):
                parts.append(f"({match}:{score / 100:.3f})"
                             if options.get("interrogate_return_ranks") else match)
        return ", ".join(parts)
