"""Labelled grids (A1111's images.draw_grid_annotations / draw_prompt_matrix): a grid of equal
cells with a label above each column and left of each row; an inactive label is drawn struck
through in grey (a prompt-matrix part that is off)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

TEXT_COLOR = (0, 0, 0)
INACTIVE_COLOR = (153, 153, 153)
BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class GridAnnotation:
    text: str = ""
    is_active: bool = True


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _wrapped(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """`text` broken into lines no wider than `width` (words kept whole)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}".strip()
            if line and draw.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _label_height(draw, annotations: Sequence[GridAnnotation], font, width: int,
                  line_height: int) -> int:
    """The height of one label: all its annotations' lines."""
    return sum(len(_wrapped(draw, a.text, font, width)) for a in annotations) * line_height


def _draw_label(draw, annotations: Sequence[GridAnnotation], x: int, y: int, width: int,
                font, line_height: int) -> None:
    """Each annotation's lines centred at x in a box `width` wide, starting at y."""
    for annotation in annotations:
        color = TEXT_COLOR if annotation.is_active else INACTIVE_COLOR
        for line in _wrapped(draw, annotation.text, font, width):
            line_width = draw.textlength(line, font=font)
            left = x - line_width / 2
            draw.text((left, y), line, font=font, fill=color)
            if not annotation.is_active:
                middle = y + line_height // 2
                draw.line((left, middle, left + line_width, middle), fill=color, width=2)
            y += line_height


def draw_grid_annotations(grid: Image.Image, cell_width: int, cell_height: int,
                          columns: Sequence[Sequence[GridAnnotation]],
                          rows: Sequence[Sequence[GridAnnotation]],
                          margin: int = 0) -> Image.Image:
    """`grid` (len(columns) x len(rows) cells of cell_width x cell_height, `margin` px apart)
    with the column labels above and the row labels on the left."""
    font_size = max(12, (cell_width + cell_height) // 24)
    font = _font(font_size)
    line_height = int(font_size * 1.3)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    top = max((_label_height(probe, column, font, cell_width, line_height)
               for column in columns), default=0) + (line_height // 2 if any(columns) else 0)
    left = (cell_width * 3 // 4) if any(rows) else 0
    result = Image.new("RGB", (grid.width + left, grid.height + top), BACKGROUND)
    result.paste(grid, (left, top))
    draw = ImageDraw.Draw(result)
    for index, column in enumerate(columns):
        x = left + index * (cell_width + margin) + cell_width // 2
        _draw_label(draw, column, x, line_height // 4, cell_width, font, line_height)
    for index, row in enumerate(rows):
        height = _label_height(draw, row, font, left, line_height)
        y = top + index * (cell_height + margin) + (cell_height - height) // 2
        _draw_label(draw, row, left // 2, y, left, font, line_height)
    return result


def grid_with_margin(images: Sequence[Image.Image], columns: int, rows: int,
                     margin: int = 0) -> Image.Image:
    """Images (row by row) on a columns x rows grid of the first image's size, `margin` apart."""
    width, height = images[0].size
    grid = Image.new("RGB", (columns * width + (columns - 1) * margin,
                             rows * height + (rows - 1) * margin), BACKGROUND)
    for index, image in enumerate(images[:columns * rows]):
        grid.paste(image, ((index % columns) * (width + margin),
                           (index // columns) * (height + margin)))
    return grid
