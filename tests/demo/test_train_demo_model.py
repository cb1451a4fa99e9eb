"""The demo trainer on a tiny recipe: the file has the SD1.x layout, loads through the engine's
normal path, carries its recipe, and training is deterministic."""
from __future__ import annotations

import dataclasses
import json

import torch
from safetensors import safe_open

from modules.demo.train_demo_model import (
    RECIPE_METADATA_KEY, Recipe, normalise_vae_latents, train,
)
from modules.engine.checkpoint_io import read_state_dict
from modules.engine.configs import VAEConfig
from modules.engine.sd_model import load_model
from modules.engine.vae import AutoencoderKL

TINY = dataclasses.replace(
    Recipe(), vae_crop_steps=2, vae_full_steps=1, vae_crop_batch=4, vae_full_batch=2,
    latent_images=16, steps=3, batch=4, save_every=2, unet_channels=32, text_layers=1)


def _train(path):
    torch.set_num_threads(1)
    return train(TINY, path, device=torch.device("cpu"), report=lambda line: None)


def test_tiny_training_writes_an_sd1_checkpoint_the_engine_loads(tmp_path):
    path = _train(tmp_path / "demo.safetensors")
    model = load_model(path)        # strict: no missing, unexpected or mis-shaped key
    assert model.config.family == "sd1" and model.config.variant == "normal"
    assert model.config.unet == TINY.model_config().unet
    assert model.config.vae == TINY.model_config().vae
    assert len(model.config.vae.ch_mult) == 4          # f = 8
    (prefix, text), = model.config.text_encoders
    assert prefix == "cond_stage_model." and text.kind == "clip_l"
    assert (text.vocab_size, text.max_positions) == (49408, 77)
    state = read_state_dict(path)
    assert state["model.diffusion_model.out.2.weight"].dtype == torch.float16
    assert "alphas_cumprod" in state
    assert "cond_stage_model.transformer.text_model.embeddings.position_ids" in state
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    recipe = json.loads(metadata[RECIPE_METADATA_KEY])
    assert recipe["recipe"]["steps"] == 3
    assert recipe["training"]["unet_steps_done"] == 3
    assert recipe["latent_scale"] == 0.18215
    assert metadata["modelspec.resolution"] == "64x64"


def test_training_is_deterministic(tmp_path):
    first = read_state_dict(_train(tmp_path / "a.safetensors"))
    second = read_state_dict(_train(tmp_path / "b.safetensors"))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_latent_normalisation_keeps_decoding_and_gives_unit_latents():
    torch.manual_seed(0)
    vae = AutoencoderKL(VAEConfig(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1)).eval()
    images = torch.rand(8, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        before = vae.decode(vae.encode(images))
        normalise_vae_latents(vae, images)
        latents = vae.encode(images)
        after = vae.decode(latents)
    assert torch.allclose(before, after, atol=1e-4)
    assert torch.allclose(latents.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-3)
    assert torch.allclose(latents.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-3)


def test_resume_continues_from_a_checkpoint_and_records_it(tmp_path):
    first = _train(tmp_path / "first.safetensors")
    recipe = dataclasses.replace(TINY, steps=2, seed=1)
    second = train(recipe, tmp_path / "second.safetensors", device=torch.device("cpu"),
                   report=lambda line: None, resume_from=first)
    before, after = read_state_dict(first), read_state_dict(second)
    vae_key = "first_stage_model.decoder.conv_out.weight"
    assert torch.equal(before[vae_key], after[vae_key])           # the VAE is kept
    unet_key = "model.diffusion_model.out.2.weight"
    assert not torch.equal(before[unet_key], after[unet_key])
    with safe_open(str(second), "pt") as handle:
        recipe_json = json.loads(handle.metadata()[RECIPE_METADATA_KEY])
    resumed = recipe_json["training"]["resumed_from"]
    assert resumed["file"] == "first.safetensors"
    assert resumed["recipe"]["recipe"]["steps"] == 3
