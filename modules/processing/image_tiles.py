"""An image cut into overlapping tiles and put back together (A1111's images.split_grid /
combine_grid / Grid, which SD upscale and upscaling extensions use).

`Grid.tiles` keeps A1111's shape: one `[y, tile_h, row]` per row, each row a list of
`[x, tile_w, tile_image]`; a caller may replace the tile images (with processed ones of the
same size) before `combine_grid`. Tiles are spread evenly so the first starts at the left/top
edge and the last ends at the right/bottom edge; neighbours overlap by at least `overlap` px,
and a tile is blended into the one before it over `overlap` px with a linear ramp."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass
class Grid:
    tiles: list = field(default_factory=list)
    tile_w: int = 512
    tile_h: int = 512
    image_w: int = 512
    image_h: int = 512
    overlap: int = 64


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles of one direction start."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / max(1, tile - overlap))
    step = (length - tile) / (count - 1) if count > 1 else 0
    return [min(int(index * step), length - tile) for index in range(count)]


def split_grid(image: Image.Image, tile_w: int = 512, tile_h: int = 512,
               overlap: int = 64) -> Grid:
    """`image` as tiles of tile_w x tile_h (smaller when the image is)."""
    tile_w, tile_h = min(tile_w, image.width), min(tile_h, image.height)
    overlap = max(0, min(overlap, tile_w - 1, tile_h - 1))
    grid = Grid([], tile_w, tile_h, image.width, image.height, overlap)
    for y in _starts(image.height, tile_h, overlap):
        row = [[x, tile_w, image.crop((x, y, x + tile_w, y + tile_h))]
               for x in _starts(image.width, tile_w, overlap)]
        grid.tiles.append([y, tile_h, row])
    return grid


def _ramp(length: int, across: int, horizontal: bool) -> np.ndarray:
    """Weights 0 → 1 over `length` px (of the newer tile), `across` px wide."""
    ramp = (np.arange(length, dtype=np.float32) / max(1, length))
    return np.tile(ramp[None, :, None], (across, 1, 1)) if horizontal else \
        np.tile(ramp[:, None, None], (1, across, 1))


def _blend_in(canvas: np.ndarray, piece: np.ndarray, x: int, y: int, overlap: int,
              horizontal: bool) -> None:
    """Paste `piece` at (x, y), fading from what is there over its first `overlap` px."""
    height, width = piece.shape[:2]
    if overlap <= 0 or (x == 0 if horizontal else y == 0):
        canvas[y:y + height, x:x + width] = piece
        return
    if horizontal:
        weight = _ramp(overlap, height, True)
        old = canvas[y:y + height, x:x + overlap]
        canvas[y:y + height, x:x + overlap] = old * (1 - weight) + piece[:, :overlap] * weight
        canvas[y:y + height, x + overlap:x + width] = piece[:, overlap:]
    else:
        weight = _ramp(overlap, width, False)
        old = canvas[y:y + overlap, x:x + width]
        canvas[y:y + overlap, x:x + width] = old * (1 - weight) + piece[:overlap] * weight
        canvas[y + overlap:y + height, x:x + width] = piece[overlap:]


def combine_grid(grid: Grid) -> Image.Image:
    """The tiles put back into one image of the grid's size."""
    canvas = np.zeros((grid.image_h, grid.image_w, 3), dtype=np.float32)
    for y, height, row in grid.tiles:
        strip = np.zeros((height, grid.image_w, 3), dtype=np.float32)
        for x, width, tile in row:
            piece = np.asarray(tile.convert("RGB").resize((width, height)), dtype=np.float32)
            _blend_in(strip, piece, x, 0, grid.overlap, horizontal=True)
        _blend_in(canvas, strip, 0, y, grid.overlap, horizontal=False)
    return Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
