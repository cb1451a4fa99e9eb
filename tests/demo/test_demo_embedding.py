"""Textual inversion on the demo model: an embedding trained for 200 steps on pictures of one
colour-shape pair (a purple star, its name standing for "purple star" in the captions) makes that
pair far more often than the same prompt without it. The figures are printed for the closing
note: `pytest tests/demo/test_demo_embedding.py -s`."""
from __future__ import annotations

import random

import pytest

from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.app.training_service import create_embedding_here, run_embedding_training
from modules.demo.shapes_dataset import (COLOURS, POSITION_PHRASES, POSITIONS, SIZES, Scene,
                                         render_scene, sample_rng)
from modules.demo.shapes_dataset import _spec as shape_spec
from modules.processing.embedding_training import EmbeddingTrainingRequest
from modules.processing.params import GenerationParams
from modules.processing.txt2img import run_txt2img
from tests.demo.conftest import DEMO_CHECKPOINT, ROOT
from tests.demo.shape_analyser import analyse

NAME = "zyqstar"
BACKGROUNDS = [colour for colour in COLOURS if colour != "purple"]


def caption(size: str, position: str, background: str, subject: str) -> str:
    return " ".join(f"a {size} {subject} {POSITION_PHRASES[position]}".split()) + \
        f", on a {background} background"


def test_an_embedding_of_a_purple_star_makes_purple_stars(tmp_path):
    if not DEMO_CHECKPOINT.is_file():
        pytest.skip(f"no demo checkpoint at {DEMO_CHECKPOINT}")
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "filewords.txt").write_text("[filewords]\n")
    dataset = tmp_path / "purple-stars"
    dataset.mkdir()
    rng = sample_rng(7, 0)
    for index in range(32):
        size, position = rng.choice(SIZES), rng.choice(POSITIONS)
        background = rng.choice(BACKGROUNDS)
        scene = Scene(background, (shape_spec(rng, "star", "purple", size, position),))
        render_scene(scene, 64).save(dataset / f"{index:03d}.png")
        (dataset / f"{index:03d}.txt").write_text(caption(size, position, background, NAME))
    args, _ = parse_args(["--data-dir", str(tmp_path), "--ckpt", str(DEMO_CHECKPOINT),
                          "--skip-load-model-at-start", "--textual-inversion-templates-dir",
                          str(templates)])
    ctx = build_app_context(args, ROOT)
    try:
        ctx.options.set("samples_save", False)
        ctx.options.set("grid_save", False)
        ctx.jobs.run("create_embedding", lambda progress: create_embedding_here(
            ctx, NAME, num_vectors_per_token=2, init_text="shape"))
        request = EmbeddingTrainingRequest(
            embedding_name=NAME, learn_rate="0.01", batch_size=4, data_root=str(dataset),
            training_width=64, training_height=64, steps=200, save_embedding_every=0,
            create_image_every=0, template_filename="filewords.txt",
            latent_sampling_method="deterministic")
        result = ctx.jobs.run("train_embedding",
                              lambda progress: run_embedding_training(ctx, request, progress))
        assert result.step == 200

        def purple_star(prompt: str, seed: int) -> bool:
            params = GenerationParams(prompt=prompt, seed=seed, steps=20,
                                      sampler_name="DPM++ 2M", cfg_scale=7.0, width=64,
                                      height=64)
            image = ctx.jobs.run("txt2img", lambda progress: run_txt2img(
                params, ctx.processing_context(progress))).images[0]
            found = analyse(image)
            return found.colour == "purple" and found.shape == "star"

        trials = random.Random(99)
        made = {"with": 0, "without": 0}
        count = 16
        for index in range(count):
            size, position = trials.choice(SIZES), trials.choice(POSITIONS)
            background = trials.choice(BACKGROUNDS)
            made["with"] += purple_star(caption(size, position, background, NAME), 500 + index)
            made["without"] += purple_star(caption(size, position, background, ""), 500 + index)
        first, last = sum(result.losses[:20]) / 20, sum(result.losses[-20:]) / 20
        print(f"\npurple stars with the embedding {made['with']}/{count}, without "
              f"{made['without']}/{count}; training loss {first:.4f} -> {last:.4f}")
        assert made["with"] >= count // 4
        assert made["with"] >= made["without"] + count // 5
    finally:
        ctx.close()
