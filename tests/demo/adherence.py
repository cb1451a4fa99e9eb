"""Prompt adherence of the demo model on held-out captions, measured with the shape analyser.

Also a command that writes the figures and a grid image (for the issue's closing note):

    python -m tests.demo.adherence --count 64 --grid outputs/demo-adherence.png
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from PIL import Image, ImageDraw

from modules.demo.shapes_dataset import Scene, held_out_scenes
from tests.demo.shape_analyser import Analysis, analyse

FIELDS = ("background", "colour", "shape", "size", "position")


@dataclass(frozen=True)
class Trial:
    scene: Scene
    seed: int
    image: Image.Image
    analysis: Analysis

    def correct(self, field: str) -> bool:
        if field == "background":
            return self.analysis.background == self.scene.background
        expected = getattr(self.scene.main, field)
        return getattr(self.analysis, field) == expected


def run_trials(generate, count: int, *, seed: int = 1000, **fields) -> list[Trial]:
    """`generate(prompt=..., seed=..., **fields) -> Processed` for `count` held-out captions."""
    trials = []
    for index, scene in enumerate(held_out_scenes(count)):
        processed = generate(prompt=scene.caption(), seed=seed + index, **fields)
        image = processed.images[0]
        trials.append(Trial(scene, seed + index, image, analyse(image)))
    return trials


def rates(trials: list[Trial]) -> dict[str, float]:
    return {field: sum(t.correct(field) for t in trials) / len(trials) for field in FIELDS}


def grid(trials: list[Trial], columns: int = 8, scale: int = 2) -> Image.Image:
    """Generated images; a green / red bar under each says whether the main colour and the
    background were read as asked."""
    side = trials[0].image.width * scale
    rows = -(-len(trials) // columns)
    sheet = Image.new("RGB", (columns * side, rows * (side + 6)), (128, 128, 128))
    draw = ImageDraw.Draw(sheet)
    for index, trial in enumerate(trials):
        x, y = (index % columns) * side, (index // columns) * (side + 6)
        sheet.paste(trial.image.resize((side, side), Image.NEAREST), (x, y))
        for offset, field in ((0, "colour"), (side // 2, "background")):
            colour = (40, 200, 60) if trial.correct(field) else (220, 30, 30)
            draw.rectangle((x + offset, y + side + 1, x + offset + side // 2 - 2, y + side + 4),
                           fill=colour)
    return sheet


def main(argv: list[str] | None = None) -> None:
    from pathlib import Path

    import torch

    from modules.app.cmd_args import parse_args
    from modules.app.context import build_app_context
    from tests.demo import conftest

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--grid", default=None, help="write a grid image here")
    parser.add_argument("--cfg-scale", type=float, default=7.0)
    parser.add_argument("--data-dir", default="/tmp/demo-adherence-data")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    app_args, _ = parse_args(["--data-dir", args.data_dir, "--ckpt", str(conftest.DEMO_CHECKPOINT),
                              "--skip-load-model-at-start"])
    ctx = build_app_context(app_args, conftest.ROOT)
    try:
        trials = run_trials(lambda **fields: conftest.txt2img(ctx, **fields), args.count,
                            cfg_scale=args.cfg_scale)
    finally:
        ctx.close()
    print(json.dumps({"count": len(trials), "checkpoint": str(conftest.DEMO_CHECKPOINT),
                      "rates": rates(trials)}, indent=1))
    for trial in trials:
        if not (trial.correct("colour") and trial.correct("background")):
            print(f"miss: {trial.scene.caption()!r} -> {trial.analysis.colour} "
                  f"{trial.analysis.shape} on {trial.analysis.background}")
    if args.grid:
        Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
        grid(trials).save(args.grid)


if __name__ == "__main__":
    main()
