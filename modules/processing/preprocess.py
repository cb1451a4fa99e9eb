"""The Train tab's "Preprocess images": a source folder of pictures becomes a training folder of
same-size PNGs with caption `.txt` files, as A1111's preprocessing does.

Per picture: any mode is read as RGB; a picture much longer than the target's proportions is
split into overlapping pieces (`split`); otherwise it is cropped to the target's proportions,
around its focal point when `focal_crop` is on (faces, busy detail and corners, weighted) or its
centre, and resized; `flip` adds a mirrored copy. Captions come from the captioners asked for
(BLIP, DeepBooru) when their weights are present, else from the file name, combined with an
existing `.txt` as `existing_captions` says (ignore / copy / prepend / append).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from modules.processing.training_create import TrainingInputError
from modules.processing.training_loop import IMAGE_SUFFIXES, file_words, read_image

CAPTION_MODES = ("ignore", "copy", "prepend", "append")


@dataclass
class PreprocessRequest:
    width: int = 512
    height: int = 512
    existing_captions: str = "ignore"
    flip: bool = False
    split: bool = False
    split_threshold: float = 0.5
    overlap_ratio: float = 0.2
    focal_crop: bool = False
    focal_face_weight: float = 0.9
    focal_entropy_weight: float = 0.15
    focal_edges_weight: float = 0.5
    caption_blip: bool = False
    caption_deepbooru: bool = False


@dataclass
class PreprocessResult:
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def split_pieces(image: Image.Image, width: int, height: int, threshold: float,
                 overlap: float) -> list[Image.Image]:
    """Overlapping pieces of the target's proportions along the picture's long side, or [] when
    it is not longer than the target by more than `threshold` (0.5: half again as long)."""
    ratio = (image.width / image.height) / (width / height)
    horizontal = ratio >= 1
    length = ratio if horizontal else 1 / ratio
    if length < 1 + threshold:
        return []
    count = max(2, math.ceil((length - overlap) / (1 - overlap)))
    side = image.height * width / height if horizontal else image.width * height / width
    total = image.width if horizontal else image.height
    step = (total - side) / (count - 1)
    pieces = []
    for index in range(count):
        start = round(index * step)
        box = (start, 0, start + round(side), image.height) if horizontal else \
            (0, start, image.width, start + round(side))
        pieces.append(image.crop(box).resize((width, height), Image.Resampling.LANCZOS))
    return pieces


def focal_point(image: Image.Image, request: PreprocessRequest) -> tuple[float, float]:
    """The weighted centre (x, y in pixels) of the faces, the busiest detail and the corners."""
    from modules.engine.face_restore import detect_faces

    rgb = np.asarray(image.convert("RGB"))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    points: list[tuple[float, float, float]] = []
    faces = detect_faces(rgb) if request.focal_face_weight > 0 else []
    for face in faces:
        left, top, face_width, face_height = face.box
        points.append((left + face_width / 2, top + face_height / 2,
                       request.focal_face_weight / len(faces)))
    if request.focal_entropy_weight > 0:
        detail = cv2.GaussianBlur(np.abs(cv2.Laplacian(grey, cv2.CV_32F)), (0, 0), 8)
        y, x = np.unravel_index(int(np.argmax(detail)), detail.shape)
        points.append((float(x), float(y), request.focal_entropy_weight))
    if request.focal_edges_weight > 0:
        corners = cv2.goodFeaturesToTrack(grey, maxCorners=100, qualityLevel=0.04,
                                          minDistance=min(image.size) / 20)
        if corners is not None:
            xs, ys = corners[:, 0, 0], corners[:, 0, 1]
            points.append((float(xs.mean()), float(ys.mean()), request.focal_edges_weight))
    total = sum(weight for _, _, weight in points)
    if total <= 0:
        return image.width / 2, image.height / 2
    return (sum(x * w for x, _, w in points) / total, sum(y * w for _, y, w in points) / total)


def crop_to_target(image: Image.Image, request: PreprocessRequest) -> Image.Image:
    """The target's proportions cut around the focal point (or the centre), then resized."""
    width, height = request.width, request.height
    if not request.focal_crop:
        return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
    scale = max(width / image.width, height / image.height)
    crop_w, crop_h = width / scale, height / scale
    cx, cy = focal_point(image, request)
    left = min(max(cx - crop_w / 2, 0), image.width - crop_w)
    top = min(max(cy - crop_h / 2, 0), image.height - crop_h)
    box = (round(left), round(top), round(left + crop_w), round(top + crop_h))
    return image.crop(box).resize((width, height), Image.Resampling.LANCZOS)


def combined_caption(made: str, existing: str | None, mode: str) -> str:
    if existing is None or mode == "ignore":
        return made
    if mode == "copy":
        return existing
    parts = [existing, made] if mode == "prepend" else [made, existing]
    return ", ".join(part for part in parts if part)


def preprocess(source: Path, destination: Path, request: PreprocessRequest,
               captioners: dict[str, Callable[[Image.Image], str]], progress: Any = None
               ) -> PreprocessResult:
    """Every picture of `source` into `destination` (made if needed); `captioners` maps "BLIP"
    / "DeepBooru" to a function for those whose weights are present."""
    if request.existing_captions not in CAPTION_MODES:
        raise TrainingInputError(f"existing captions: one of {', '.join(CAPTION_MODES)}")
    if request.width % 8 or request.height % 8 or min(request.width, request.height) < 64:
        raise TrainingInputError("width and height must be multiples of 8, at least 64")
    if Path(source).resolve() == Path(destination).resolve():
        raise TrainingInputError("the source and destination folders must differ")
    files = sorted(p for p in Path(source).iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise TrainingInputError(f"no pictures in {source}")
    destination.mkdir(parents=True, exist_ok=True)
    result = PreprocessResult()
    wanted = [name for name, on in (("BLIP", request.caption_blip),
                                    ("DeepBooru", request.caption_deepbooru)) if on]
    for name in wanted:
        if name not in captioners:
            result.notes.append(f"{name} weights are not installed: captions from file names")
    if progress is not None:
        progress.begin(1)
    for index, path in enumerate(files):
        try:
            image = read_image(path)
        except (UnidentifiedImageError, OSError, ValueError) as error:
            result.skipped.append(f"{path.name}: {error}")
            continue
        pieces = split_pieces(image, request.width, request.height, request.split_threshold,
                              request.overlap_ratio) if request.split else []
        pieces = pieces or [crop_to_target(image, request)]
        made = ", ".join(captioners[name](image) for name in wanted if name in captioners) \
            or file_words(path)
        existing_file = path.with_suffix(".txt")
        existing = existing_file.read_text(encoding="utf-8").strip() \
            if existing_file.is_file() else None
        text = combined_caption(made, existing, request.existing_captions)
        outputs = [(f"{index:05d}-{number}-{path.stem}", piece)
                   for number, piece in enumerate(pieces)]
        if request.flip:
            outputs += [(f"{stem}-flipped", ImageOps.mirror(piece)) for stem, piece in outputs]
        for stem, piece in outputs:
            target = destination / f"{stem}.png"
            piece.save(target)
            target.with_suffix(".txt").write_text(text, encoding="utf-8")
            result.written.append(target)
        if progress is not None:
            progress.on_sampling_step(index + 1, len(files))
    return result
