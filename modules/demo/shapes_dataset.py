"""A procedural, seeded dataset of small scenes: one or two flat shapes in named colours, sizes and
positions on a coloured background, each with a plain-English caption such as
"a large red circle on the left, on a blue background".

Every sample is a pure function of (seed, index), so the dataset needs no files, is identical on
every machine, and any sample can be drawn on its own. Some (colour, shape, background) triples are
held out of training (`is_held_out`) so that adherence can be measured on captions the model has
never seen.
"""
from __future__ import annotations

import math
import random
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

# Eight colours near the corners of the RGB cube, so that any two are far apart (>= ~150).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 40),
    "cyan": (40, 210, 220),
    "purple": (160, 40, 200),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")

# shape centre as a fraction of the image side
POSITION_CENTRES: dict[str, tuple[float, float]] = {
    "left": (0.3, 0.5), "right": (0.7, 0.5), "top": (0.5, 0.3), "bottom": (0.5, 0.7),
    "center": (0.5, 0.5),
}
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left", "right": "on the right", "top": "at the top",
    "bottom": "at the bottom", "center": "in the center",
}
# shape "radius" (half its extent) as a fraction of the image side: (min, max)
SIZE_RADII: dict[str, tuple[float, float]] = {"small": (0.11, 0.14), "large": (0.21, 0.25)}
POSITION_JITTER = 0.03          # of the image side, each axis
SUPERSAMPLING = 4               # draw at 4x and box-filter down: anti-aliased edges
STAR_INNER_RATIO = 0.45
HELD_OUT_PERCENT = 12           # of the (colour, shape, background) triples

# parts of a caption training may drop so partial prompts ("a red circle") mean something too
CAPTION_PARTS: tuple[str, ...] = ("size", "colour", "position", "background")


@dataclass(frozen=True)
class ShapeSpec:
    shape: str
    colour: str
    size: str
    position: str
    centre: tuple[float, float]     # fraction of the image side (x, y)
    radius: float                   # fraction of the image side

    def phrase(self, drop: frozenset[str] = frozenset()) -> str:
        words = ["a"]
        if "size" not in drop:
            words.append(self.size)
        if "colour" not in drop:
            words.append(self.colour)
        words.append(self.shape)
        if "position" not in drop:
            words.append(POSITION_PHRASES[self.position])
        return " ".join(words)


@dataclass(frozen=True)
class Scene:
    background: str
    shapes: tuple[ShapeSpec, ...]   # the first one is the main object

    @property
    def main(self) -> ShapeSpec:
        return self.shapes[0]

    def caption(self, drop: frozenset[str] = frozenset()) -> str:
        """The full caption, or a partial one without the parts named in `drop`."""
        text = " and ".join(spec.phrase(drop) for spec in self.shapes)
        if "background" not in drop:
            text += f", on a {self.background} background"
        return text


def is_held_out(colour: str, shape: str, background: str) -> bool:
    """Whether the (colour, shape, background) triple is kept out of training (a stable hash:
    the same on every machine and Python version)."""
    key = f"{colour}|{shape}|{background}".encode()
    return zlib.crc32(key) % 100 < HELD_OUT_PERCENT


def _spec(rng: random.Random, shape: str, colour: str, size: str, position: str) -> ShapeSpec:
    cx, cy = POSITION_CENTRES[position]
    centre = (cx + rng.uniform(-POSITION_JITTER, POSITION_JITTER),
              cy + rng.uniform(-POSITION_JITTER, POSITION_JITTER))
    return ShapeSpec(shape, colour, size, position, centre, rng.uniform(*SIZE_RADII[size]))


def random_scene(rng: random.Random, *, split: str = "train",
                 two_shape_prob: float = 0.0) -> Scene:
    """A random scene whose main triple is in `split` ("train", "heldout" or "all")."""
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
    while True:
        colour, shape = rng.choice(COLOURS), rng.choice(SHAPES)
        background = rng.choice([name for name in COLOURS if name != colour])
        held = is_held_out(colour, shape, background)
        if split == "all" or held == (split == "heldout"):
            break
    if rng.random() >= two_shape_prob:
        main = _spec(rng, shape, colour, rng.choice(SIZES), rng.choice(POSITIONS))
        return Scene(background, (main,))
    # two small shapes on opposite sides, the second in a third colour
    opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
    position = rng.choice(tuple(opposite))
    main = _spec(rng, shape, colour, "small", position)
    other_colour = rng.choice([c for c in COLOURS if c not in (colour, background)])
    shapes = [main, _spec(rng, rng.choice(SHAPES), other_colour, "small", opposite[position])]
    return Scene(background, tuple(shapes))


def _polygon(spec: ShapeSpec, side: float) -> list[tuple[float, float]]:
    cx, cy, r = spec.centre[0] * side, spec.centre[1] * side, spec.radius * side
    if spec.shape == "square":
        h = 0.9 * r   # a square of the same visual weight as the circle
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if spec.shape == "triangle":
        outer = 1.15 * r
        return [(cx + outer * math.sin(a), cy - outer * math.cos(a))
                for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)]
    if spec.shape == "star":
        outer = 1.15 * r
        points = []
        for k in range(10):
            radius = outer if k % 2 == 0 else outer * STAR_INNER_RATIO
            angle = k * math.pi / 5
            points.append((cx + radius * math.sin(angle), cy - radius * math.cos(angle)))
        return points
    raise ValueError(f"unknown shape {spec.shape!r}")


def render_scene(scene: Scene, size: int = 64) -> Image.Image:
    """The scene as an RGB image of size x size pixels (anti-aliased)."""
    side = size * SUPERSAMPLING
    image = Image.new("RGB", (side, side), PALETTE[scene.background])
    draw = ImageDraw.Draw(image)
    # later shapes are drawn first, so the main object is always fully visible
    for spec in reversed(scene.shapes):
        fill = PALETTE[spec.colour]
        if spec.shape == "circle":
            cx, cy, r = spec.centre[0] * side, spec.centre[1] * side, spec.radius * side
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            draw.polygon(_polygon(spec, side), fill=fill)
    return image.reduce(SUPERSAMPLING)


def sample_rng(seed: int, index: int) -> random.Random:
    """The generator of sample `index` of the dataset with `seed` (independent per sample)."""
    return random.Random(f"demo-shapes:{seed}:{index}")


@dataclass(frozen=True)
class ShapesDataset:
    """Random-access procedural dataset: `scene(i)`, `image(i)`, `caption(i)` depend only on
    (seed, i, split, two_shape_prob)."""
    seed: int = 0
    size: int = 64
    split: str = "train"
    two_shape_prob: float = 0.0

    def scene(self, index: int) -> Scene:
        return random_scene(sample_rng(self.seed, index), split=self.split,
                            two_shape_prob=self.two_shape_prob)

    def image(self, index: int) -> Image.Image:
        return render_scene(self.scene(index), self.size)

    def caption(self, index: int) -> str:
        return self.scene(index).caption()

    def samples(self, count: int, start: int = 0) -> Iterator[tuple[Image.Image, str, Scene]]:
        for index in range(start, start + count):
            scene = self.scene(index)
            yield render_scene(scene, self.size), scene.caption(), scene


def caption_dropout(scene: Scene, rng: random.Random, *, part_drop_prob: float,
                    empty_prob: float) -> str:
    """A training caption: "" with probability `empty_prob` (so classifier-free guidance has an
    unconditional model), else the caption with each part dropped with `part_drop_prob`."""
    if rng.random() < empty_prob:
        return ""
    drop = frozenset(part for part in CAPTION_PARTS if rng.random() < part_drop_prob)
    return scene.caption(drop)


def held_out_scenes(count: int, seed: int = 1234) -> list[Scene]:
    """`count` single-shape scenes whose (colour, shape, background) triple training never saw,
    with distinct captions."""
    rng = random.Random(f"demo-shapes-heldout:{seed}")
    scenes: list[Scene] = []
    seen: set[str] = set()
    while len(scenes) < count:
        scene = random_scene(rng, split="heldout")
        if scene.caption() not in seen:
            seen.add(scene.caption())
            scenes.append(scene)
    return scenes


def held_out_triples() -> list[tuple[str, str, str]]:
    return [(c, s, b) for c in COLOURS for s in SHAPES for b in COLOURS
            if b != c and is_held_out(c, s, b)]


def describe(sizes: Sequence[int] = (64,)) -> dict[str, object]:
    """The dataset's definition, for the training recipe stored with a checkpoint."""
    return {
        "palette": PALETTE, "shapes": SHAPES, "sizes": SIZE_RADII, "positions": POSITION_CENTRES,
        "position_jitter": POSITION_JITTER, "held_out_percent_of_triples": HELD_OUT_PERCENT,
        "held_out_triples": len(held_out_triples()), "image_sizes": list(sizes),
        "caption_template": "a {size} {colour} {shape} {position phrase}, on a {background} "
                            "background",
    }
