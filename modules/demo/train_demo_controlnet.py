"""Train the demo ControlNet: canny edge maps → the demo checkpoint's shapes, drawn where the map
puts them.

    python -m modules.demo.train_demo_controlnet \\
        --out models/ControlNet/control_demo-shapes_canny.safetensors

The ControlNet copies the demo UNet's encoder (weights included, as the ControlNet paper
initialises it) and starts from zero convolutions, so it begins as "no control". The demo
checkpoint stays frozen. Each training image of the shapes dataset gets its canny map (OpenCV,
thresholds 100 / 200, what the `canny` preprocessor gives); half the captions are empty and the
position phrase is usually dropped, so the map, not the prompt, has to say where the shape goes.
The file is saved without the `control_model.` prefix, in fp16, with the recipe and figures as
JSON in its metadata (`demo_controlnet_recipe`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from safetensors.torch import save_file

from modules.demo.shapes_dataset import CAPTION_PARTS, Scene, ShapesDataset
from modules.demo.train_demo_model import DEFAULT_OUT as DEMO_CHECKPOINT, _TokenCache, \
    add_training_noise, learning_rate_scale, min_snr_loss
from modules.engine.controlnet import ControlNetConfig, ControlNetModel
from modules.engine.sd_model import StableDiffusionModel, ldm_alphas_cumprod, load_model
from modules.engine.tokenizer import get_clip_tokenizer

RECIPE_METADATA_KEY = "demo_controlnet_recipe"
DEFAULT_OUT = "models/ControlNet/control_demo-shapes_canny.safetensors"


@dataclass(frozen=True)
class ControlRecipe:
    seed: int = 0
    images: int = 8192              # training pairs (latent, canny map, caption), made once
    canny_low: int = 100
    canny_high: int = 200
    steps: int = 1500
    batch: int = 32
    lr: float = 2e-4
    warmup_steps: int = 100
    min_snr_gamma: float = 5.0
    empty_caption_prob: float = 0.5
    position_drop_prob: float = 0.8
    part_drop_prob: float = 0.1


QUICK_RECIPE = dict(images=64, steps=4, batch=4)


def canny_map(image, recipe: ControlRecipe = ControlRecipe()) -> np.ndarray:
    edges = cv2.Canny(np.asarray(image.convert("RGB")), recipe.canny_low, recipe.canny_high)
    return np.repeat(edges[:, :, None], 3, axis=2)


def training_caption(scene: Scene, rng: random.Random, recipe: ControlRecipe) -> str:
    if rng.random() < recipe.empty_caption_prob:
        return ""
    drop = {part for part in CAPTION_PARTS if rng.random() < recipe.part_drop_prob}
    if rng.random() < recipe.position_drop_prob:
        drop.add("position")
    return scene.caption(frozenset(drop))


def controlnet_from_unet(base: StableDiffusionModel) -> ControlNetModel:
    """A ControlNet holding the base UNet's encoder weights, its outputs zeroed."""
    unet = base.model.diffusion_model
    control = ControlNetModel(ControlNetConfig(unet=unet.config, family="sd1"))
    encoder = {key: value for key, value in unet.state_dict().items()
               if key.startswith(("time_embed.", "input_blocks.", "middle_block."))}
    missing, unexpected = control.load_state_dict(encoder, strict=False)
    assert not unexpected
    with torch.no_grad():
        for module in (*control.zero_convs, control.middle_block_out, control.input_hint_block[-1]):
            for parameter in module.parameters():
                parameter.zero_()
    return control


def make_pairs(base: StableDiffusionModel, recipe: ControlRecipe):
    """(latents, hints in [0, 1], scenes) of `recipe.images` training images."""
    dataset = ShapesDataset(seed=recipe.seed + 100, size=64, split="train", two_shape_prob=0.1)
    latents, hints, scenes = [], [], []
    for start in range(0, recipe.images, 64):
        batch = [(dataset.image(i), dataset.scene(i))
                 for i in range(start, min(start + 64, recipe.images))]
        pixels = torch.from_numpy(np.stack([np.asarray(image, dtype=np.float32)
                                            for image, _ in batch])).permute(0, 3, 1, 2)
        with torch.no_grad():
            latents.append(base.encode_first_stage(pixels / 127.5 - 1.0))
        hints.append(torch.from_numpy(np.stack([canny_map(image, recipe) for image, _ in batch]))
                     .permute(0, 3, 1, 2).float() / 255.0)
        scenes += [scene for _, scene in batch]
    return torch.cat(latents), torch.cat(hints), scenes


def train(base: StableDiffusionModel, control: ControlNetModel, pairs, recipe: ControlRecipe,
          report: Callable[[str], None]) -> dict:
    latents, hints, scenes = pairs
    base.requires_grad_(False)
    unet, text = base.model.diffusion_model, base.cond_stage_model
    control.train()
    optimizer = torch.optim.Adam(control.parameters(), lr=recipe.lr)
    alphas_cumprod = ldm_alphas_cumprod()
    tokens_of = _TokenCache(get_clip_tokenizer())
    rng = random.Random(f"controlnet:{recipe.seed}")
    generator = torch.Generator().manual_seed(recipe.seed)
    started, running = time.time(), 0.0
    for step in range(recipe.steps):
        indices = torch.randint(len(latents), (recipe.batch,), generator=generator)
        x0, hint = latents[indices], hints[indices]
        captions = [training_caption(scenes[i], rng, recipe) for i in indices.tolist()]
        with torch.no_grad():
            context = text.encode(torch.tensor([tokens_of(c) for c in captions]), layer=-1,
                                  final_norm=True).hidden
        noisy, t, noise, a = add_training_noise(x0, alphas_cumprod, generator)
        residuals = control(noisy, hint, t.float(), context)
        prediction = unet(noisy, t.float(), context, control=residuals)
        loss = min_snr_loss(prediction, noise, a, recipe.min_snr_gamma)
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr * learning_rate_scale(step, recipe.steps, recipe.warmup_steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(control.parameters(), 1.0)
        optimizer.step()
        running = loss.item() if step == 0 else 0.98 * running + 0.02 * loss.item()
        if step % 25 == 0 or step == recipe.steps - 1:
            elapsed = time.time() - started
            report(f"step {step + 1}/{recipe.steps} loss {running:.4f} "
                   f"{elapsed / (step + 1):.2f}s/step eta "
                   f"{elapsed / (step + 1) * (recipe.steps - step - 1) / 60:.1f} min")
    control.eval()
    return {"seconds": round(time.time() - started, 1), "loss_ema": round(running, 5)}


def save(control: ControlNetModel, out: Path, metadata: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().to(torch.float16).contiguous()
             for key, value in control.state_dict().items()}
    temporary = out.with_name(out.name + ".partial")
    save_file(state, str(temporary), metadata={"format": "pt",
                                               RECIPE_METADATA_KEY: json.dumps(metadata)})
    temporary.replace(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--base", default=DEMO_CHECKPOINT, help="the demo checkpoint")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--quick", action="store_true", help="a smoke-test run")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides: dict = dict(QUICK_RECIPE) if args.quick else {}
    if args.steps:
        overrides["steps"] = args.steps
    recipe = dataclasses.replace(ControlRecipe(), **overrides)

    def report(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    torch.manual_seed(recipe.seed)
    base = load_model(args.base)
    control = controlnet_from_unet(base)
    started = time.time()
    pairs = make_pairs(base, recipe)
    report(f"{len(pairs[2])} training pairs in {time.time() - started:.0f} s")
    figures = train(base, control, pairs, recipe, report)
    save(control, Path(args.out), {
        "recipe": dataclasses.asdict(recipe), "base": Path(args.base).name,
        "training": {**figures, "threads": torch.get_num_threads(), "torch": torch.__version__},
        "hint": "canny edges of the 64x64 image (OpenCV), RGB in [0, 1]",
        "trainer": "python -m modules.demo.train_demo_controlnet"})
    report(f"saved {args.out}")


if __name__ == "__main__":
    main()
