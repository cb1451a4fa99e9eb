"""Does the demo ControlNet put the shape where the control map says? Measured on held-out
captions with the position phrase removed: the control image is the same shape rendered at a
position chosen for the trial, preprocessed with `canny` as a user's photo would be; the shape
analyser reads where the generated shape is. The same prompt and seed without ControlNet gives the
chance level (the prompt does not say where).

    python -m tests.demo.controlnet_adherence --count 50 --grid outputs/demo-controlnet.png
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import random
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image, ImageDraw

from modules.demo.shapes_dataset import POSITION_CENTRES, POSITIONS, Scene, held_out_scenes, \
    render_scene
from tests.demo.shape_analyser import analyse

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONTROLNET = ROOT / "models" / "ControlNet" / "control_demo-shapes_canny.safetensors"


@dataclass(frozen=True)
class ControlTrial:
    prompt: str
    control_position: str
    control_image: Image.Image
    with_control: Image.Image
    without_control: Image.Image

    @property
    def followed(self) -> bool:
        return analyse(self.with_control).position == self.control_position

    @property
    def by_chance(self) -> bool:
        return analyse(self.without_control).position == self.control_position


def control_scene(scene: Scene, position: str) -> Scene:
    """The scene's main shape moved to `position` (the layout the control map shows)."""
    main = scene.main
    moved = replace(main, position=position, centre=POSITION_CENTRES[position])
    return Scene(scene.background, (moved,))


def png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def run_trials(client, count: int, *, seed: int = 2000, model: str = DEMO_CONTROLNET.stem,
               steps: int = 20) -> list[ControlTrial]:
    """`client` posts to the A1111 API (a TestClient or an HTTP session with a base URL)."""
    rng = random.Random(f"controlnet-adherence:{seed}")
    trials = []
    for index, scene in enumerate(held_out_scenes(count)):
        position = rng.choice(POSITIONS)
        control_image = render_scene(control_scene(scene, position), 64)
        prompt = scene.caption(frozenset({"position"}))
        body = {"prompt": prompt, "seed": seed + index, "steps": steps, "width": 64,
                "height": 64, "sampler_name": "DPM++ 2M", "cfg_scale": 7}
        unit = {"module": "canny", "model": model, "image": png_b64(control_image),
                "processor_res": 64, "resize_mode": "Just Resize"}
        images = []
        for units in ([unit], []):
            payload = dict(body, alwayson_scripts={"controlnet": {"args": units}})
            response = client.post("/sdapi/v1/txt2img", json=payload)
            response.raise_for_status()
            images.append(Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0]))))
        trials.append(ControlTrial(prompt, position, control_image, images[0], images[1]))
    return trials


def rates(trials: list[ControlTrial]) -> dict[str, float]:
    return {"with_controlnet": sum(t.followed for t in trials) / len(trials),
            "without_controlnet": sum(t.by_chance for t in trials) / len(trials)}


def grid(trials: list[ControlTrial], columns: int = 8, scale: int = 2) -> Image.Image:
    """Per trial: the control image, then the image made with ControlNet; a green / red bar
    says whether the shape landed where the map put it."""
    side = 64 * scale
    rows = -(-len(trials) // columns)
    sheet = Image.new("RGB", (columns * 2 * side, rows * (side + 6)), (128, 128, 128))
    draw = ImageDraw.Draw(sheet)
    for index, trial in enumerate(trials):
        x, y = (index % columns) * 2 * side, (index // columns) * (side + 6)
        sheet.paste(trial.control_image.resize((side, side), Image.NEAREST), (x, y))
        sheet.paste(trial.with_control.resize((side, side), Image.NEAREST), (x + side, y))
        colour = (40, 200, 60) if trial.followed else (220, 30, 30)
        draw.rectangle((x, y + side + 1, x + 2 * side - 2, y + side + 4), fill=colour)
    return sheet


def demo_api(data_dir: Path):
    """An in-process API over the demo checkpoint and the demo ControlNet."""
    from fastapi.testclient import TestClient

    from modules.api.app import create_api_app
    from modules.app.cmd_args import parse_args
    from modules.app.context import build_app_context
    from tests.demo.conftest import DEMO_CHECKPOINT

    args, _ = parse_args(["--data-dir", str(data_dir), "--ckpt", str(DEMO_CHECKPOINT),
                          "--controlnet-dir", str(DEMO_CONTROLNET.parent), "--nowebui"])
    ctx = build_app_context(args, ROOT)
    ctx.options.set("samples_save", False)
    return ctx, TestClient(create_api_app(ctx))


def main(argv: list[str] | None = None) -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--grid", default=None, help="write a grid image here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as data:
        ctx, client = demo_api(Path(data))
        try:
            trials = run_trials(client, args.count)
        finally:
            ctx.close()
    print(json.dumps({"count": len(trials), "rates": rates(trials)}, indent=1))
    if args.grid:
        Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
        grid(trials).save(args.grid)


if __name__ == "__main__":
    main()
