"""Reads what a demo-model image shows: the background colour, and the main object's colour, rough
shape, size and position, named with the shapes dataset's vocabulary.

Background: the median of the border pixels. Object: the pixels far from that background colour,
each named by its nearest palette colour; the main object is the largest connected region of the
most frequent such colour. Shape from the region's fill of its bounding box and the height of its
centroid inside it (a triangle pointing up is bottom-heavy, a star is centred but sparse).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from modules.demo.shapes_dataset import PALETTE, POSITION_CENTRES, SIZE_RADII

PALETTE_NAMES: tuple[str, ...] = tuple(PALETTE)
PALETTE_RGB = np.array([PALETTE[name] for name in PALETTE_NAMES], dtype=np.float32)
BORDER = 2                      # pixels of the image border read as background
FOREGROUND_DISTANCE = 70.0      # RGB distance from the background that counts as "object"
MIN_OBJECT_FRACTION = 0.004     # smaller regions are noise, not an object
# (fill of the bounding box, centroid height inside it) of each ideal shape
SHAPE_PROTOTYPES: dict[str, tuple[float, float]] = {
    "square": (1.0, 0.5), "circle": (0.785, 0.5), "triangle": (0.5, 0.667), "star": (0.384, 0.553),
}


@dataclass(frozen=True)
class Analysis:
    background: str
    background_rgb: tuple[int, int, int]
    colour: str | None             # main object's palette colour (None: no object found)
    shape: str | None
    size: str | None
    position: str | None
    object_fraction: float         # main region's share of the image
    colour_shares: dict[str, float]  # share of the image per palette colour (nearest-colour map)


def nearest_colour(rgb: Sequence[float]) -> str:
    distances = np.linalg.norm(PALETTE_RGB - np.asarray(rgb, dtype=np.float32), axis=1)
    return PALETTE_NAMES[int(distances.argmin())]


def colour_map(pixels: np.ndarray) -> np.ndarray:
    """[H, W] index into PALETTE_NAMES of each pixel's nearest palette colour."""
    distances = np.linalg.norm(pixels[:, :, None, :] - PALETTE_RGB[None, None], axis=-1)
    return distances.argmin(axis=-1)


def colour_shares(image: Image.Image) -> dict[str, float]:
    """Share of the image's pixels whose nearest palette colour is each name."""
    indices = colour_map(np.asarray(image.convert("RGB"), dtype=np.float32))
    counts = np.bincount(indices.ravel(), minlength=len(PALETTE_NAMES)) / indices.size
    return {name: float(count) for name, count in zip(PALETTE_NAMES, counts)}


def _border_pixels(pixels: np.ndarray) -> np.ndarray:
    mask = np.ones(pixels.shape[:2], dtype=bool)
    mask[BORDER:-BORDER, BORDER:-BORDER] = False
    return pixels[mask]


def classify_shape(region: np.ndarray) -> str:
    rows, cols = np.nonzero(region)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    fill = region.sum() / ((bottom - top) * (right - left))
    centroid_height = (rows.mean() + 0.5 - top) / (bottom - top)
    # the centroid term is weighted: it separates triangle and star, whose fills are close
    return min(SHAPE_PROTOTYPES, key=lambda name: (fill - SHAPE_PROTOTYPES[name][0]) ** 2
               + 2.0 * (centroid_height - SHAPE_PROTOTYPES[name][1]) ** 2)


def _position(region: np.ndarray) -> str:
    rows, cols = np.nonzero(region)
    height, width = region.shape
    x, y = (cols.mean() + 0.5) / width, (rows.mean() + 0.5) / height
    return min(POSITION_CENTRES, key=lambda name: (x - POSITION_CENTRES[name][0]) ** 2
               + (y - POSITION_CENTRES[name][1]) ** 2)


def _size(region: np.ndarray) -> str:
    # every shape spans about twice its radius: compare the larger bounding-box side with the
    # span of a radius between the largest "small" and the smallest "large" one
    rows, cols = np.nonzero(region)
    span = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) / region.shape[0]
    threshold = SIZE_RADII["small"][1] + SIZE_RADII["large"][0]
    return "large" if span > threshold else "small"


def analyse(image: Image.Image) -> Analysis:
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    background_rgb = np.median(_border_pixels(pixels), axis=0)
    background = nearest_colour(background_rgb)
    indices = colour_map(pixels)
    shares = np.bincount(indices.ravel(), minlength=len(PALETTE_NAMES)) / indices.size
    share_by_name = {name: float(share) for name, share in zip(PALETTE_NAMES, shares)}
    foreground = np.linalg.norm(pixels - background_rgb, axis=-1) > FOREGROUND_DISTANCE
    found = Analysis(background, tuple(int(v) for v in background_rgb), None, None, None, None,
                     0.0, share_by_name)
    if foreground.mean() < MIN_OBJECT_FRACTION:
        return found
    counts = np.bincount(indices[foreground], minlength=len(PALETTE_NAMES))
    colour_index = int(counts.argmax())
    labels, count = ndimage.label(foreground & (indices == colour_index))
    if count == 0:
        return found
    sizes = ndimage.sum(np.ones_like(labels), labels, index=range(1, count + 1))
    region = labels == (int(np.argmax(sizes)) + 1)
    if region.mean() < MIN_OBJECT_FRACTION:
        return found
    # fill anti-aliasing holes before measuring the shape
    region = ndimage.binary_fill_holes(region)
    return Analysis(background, found.background_rgb, PALETTE_NAMES[colour_index],
                    classify_shape(region), _size(region), _position(region),
                    float(region.mean()), share_by_name)
