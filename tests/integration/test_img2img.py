"""img2img end to end on tiny checkpoints: denoising strength, resize modes, batch rule, noise
multiplier, infotext, and instruct-pix2pix (8-channel) models with image CFG."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from modules.app.cmd_args import parse_args
from modules.app.context import AppContext, build_app_context
from modules.processing.context import UnsupportedRequestError
from modules.processing.infotext import parse_generation_parameters
from modules.processing.params import Img2ImgParams, Processed
from modules.processing.img2img import run_img2img
from modules.processing.pipeline import encode_images, images_to_tensor, latents_to_images
from modules.engine.sd_model import StableDiffusionModel
from tests.engine.tiny_checkpoints import tiny_model_config
from tests.integration.conftest import ROOT


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def make_init_image(width: int = 64, height: int = 64) -> Image.Image:
    """Smooth colour gradients with a bright square: something a VAE round trip keeps."""
    ys, xs = np.mgrid[0:height, 0:width]
    array = np.stack([xs * 255 / width, ys * 255 / height, np.full_like(xs, 96)], axis=-1)
    array[height // 4:height // 2, width // 4:width // 2] = (250, 240, 30)
    return Image.fromarray(array.astype(np.uint8))


def img2img(ctx: AppContext, checkpoint: str, **fields) -> Processed:
    """One img2img job through the job queue, as the API and UI run it."""
    fields.setdefault("steps", 4)
    fields.setdefault("width", 64)
    fields.setdefault("height", 64)
    fields.setdefault("sampler_name", "Euler")
    fields.setdefault("seed", 1)
    fields.setdefault("init_images", [make_init_image()])
    params = Img2ImgParams(**fields)
    with ctx.options.override({"sd_model_checkpoint": checkpoint, "samples_save": False,
                               "grid_save": False}):
        job = ctx.jobs.submit("img2img",
                              lambda progress: run_img2img(params, ctx.processing_context(progress)))
        return job.wait(timeout=600)


def vae_round_trip(ctx: AppContext, checkpoint: str, image: Image.Image) -> np.ndarray:
    with ctx.options.override({"sd_model_checkpoint": checkpoint}):
        model = ctx.model_manager.get(checkpoint).model
        with torch.inference_mode():
            latent = encode_images(model, images_to_tensor([image]))
            return pixels(latents_to_images(model, latent)[0])


def test_denoising_zero_gives_back_the_vae_round_trip_and_more_changes_more(app_ctx):
    init = make_init_image()
    round_trip = vae_round_trip(app_ctx, "tiny-sd1", init)
    distances = []
    for strength in (0.0, 0.3, 0.6, 1.0):
        result = img2img(app_ctx, "tiny-sd1", denoising_strength=strength, prompt="x")
        assert result.images[0].size == (64, 64)
        distances.append(float(np.abs(pixels(result.images[0]) - round_trip).mean()))
    # strength 0 is one step at the smallest sigma: the tiny random VAE is very sensitive to
    # latent changes, so "close" means within the VAE's own round-trip error of the init image
    round_trip_error = float(np.abs(round_trip - pixels(init)).mean())
    assert distances[0] < round_trip_error, (distances, round_trip_error)
    assert distances == sorted(distances) and distances[-1] > distances[0] + 5, distances


def test_infotext_and_info_of_img2img(app_ctx):
    result = img2img(app_ctx, "tiny-sd1", prompt="a hat", denoising_strength=0.5,
                     initial_noise_multiplier=0.9)
    parsed = parse_generation_parameters(result.infotexts[0])
    assert parsed["Denoising strength"] == "0.5"
    assert parsed["Noise multiplier"] == "0.9"
    assert "Mask blur" not in parsed and "Conditional mask weight" not in parsed
    assert result.denoising_strength == 0.5
    assert not result.is_using_inpainting_conditioning
    text = result.infotexts[0]
    assert text.index("Denoising strength") < text.index("Noise multiplier")


def test_noise_multiplier_changes_the_result(app_ctx):
    plain = img2img(app_ctx, "tiny-sd1", denoising_strength=0.8)
    scaled = img2img(app_ctx, "tiny-sd1", denoising_strength=0.8, initial_noise_multiplier=0.5)
    assert np.abs(pixels(plain.images[0]) - pixels(scaled.images[0])).max() > 1
    assert "Noise multiplier" not in plain.infotexts[0]


@pytest.mark.parametrize("resize_mode", [0, 1, 2, 3])
def test_every_resize_mode_gives_the_requested_size(app_ctx, resize_mode):
    wide = make_init_image(96, 48)
    result = img2img(app_ctx, "tiny-sd1", init_images=[wide], resize_mode=resize_mode,
                     width=64, height=72, denoising_strength=0.2, steps=2)
    assert result.images[0].size == (64, 72)
    assert (result.width, result.height) == (64, 72)


def test_batch_rule(app_ctx):
    one = img2img(app_ctx, "tiny-sd1", batch_size=2, denoising_strength=0.3, steps=2)
    assert len(one.images[one.index_of_first_image:]) == 2 and one.all_seeds == [1, 2]
    two_images = [make_init_image(), make_init_image().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    fewer = img2img(app_ctx, "tiny-sd1", init_images=two_images, batch_size=3,
                    denoising_strength=0.1, steps=2)
    assert fewer.batch_size == 2
    outputs = fewer.images[fewer.index_of_first_image:]
    assert len(outputs) == 2
    # each output follows its own init image (the second is the mirrored one)
    assert np.abs(pixels(outputs[0]) - pixels(two_images[0])).mean() < \
        np.abs(pixels(outputs[0]) - pixels(two_images[1])).mean()
    with pytest.raises(UnsupportedRequestError, match="bad number of images"):
        img2img(app_ctx, "tiny-sd1", init_images=two_images * 2, batch_size=3)
    with pytest.raises(UnsupportedRequestError, match="init image"):
        img2img(app_ctx, "tiny-sd1", init_images=[])


def test_transparent_init_image_is_flattened_on_the_background_colour(app_ctx):
    transparent = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    runs = {name: img2img(app_ctx, "tiny-sd1", init_images=[image], denoising_strength=0.3,
                          steps=2).images[0]
            for name, image in (("transparent", transparent),
                                ("white", Image.new("RGB", (64, 64), "white")),
                                ("black", Image.new("RGB", (64, 64), "black")))}
    assert np.array_equal(pixels(runs["transparent"]), pixels(runs["white"]))
    assert not np.array_equal(pixels(runs["transparent"]), pixels(runs["black"]))


@pytest.mark.parametrize("kind", ["sd2_v", "sdxl"])
def test_other_architectures_run_img2img(app_ctx, kind):
    result = img2img(app_ctx, f"tiny-{kind}", denoising_strength=0.5, steps=2)
    assert result.images[0].size == (64, 64)


# --- instruct-pix2pix ("edit", 8-channel UNet) ---------------------------------------------

@pytest.fixture(scope="module")
def edit_ctx(tmp_path_factory) -> AppContext:
    """A data dir with one tiny 8-channel (instruct-pix2pix) SD1 checkpoint."""
    data = tmp_path_factory.mktemp("edit-data")
    ckpt_dir = data / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    base = tiny_model_config("sd1")
    config = dataclasses.replace(base, variant="edit",
                                 unet=dataclasses.replace(base.unet, in_channels=8))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = StableDiffusionModel(config)
    state = {key: (value + 0.02 * torch.randn(value.shape)).contiguous()
             if value.is_floating_point() else value.contiguous()
             for key, value in model.state_dict().items()}
    save_file(state, str(ckpt_dir / "tiny-edit.safetensors"))
    args, _ = parse_args(["--data-dir", str(data), "--skip-load-model-at-start"])
    ctx = build_app_context(args, ROOT)
    yield ctx
    ctx.close()


def test_edit_model_uses_the_init_image_and_image_cfg(edit_ctx):
    model = edit_ctx.model_manager.get("tiny-edit").model
    assert model.config.variant == "edit"
    seen_concat = []
    original_apply = model.apply_model

    def recording_apply(x, t, crossattn, vector=None, concat=None):
        seen_concat.append(None if concat is None else concat.shape)
        return original_apply(x, t, crossattn, vector=vector, concat=concat)

    model.apply_model = recording_apply   # an instance attribute, removed below
    try:
        guided = img2img(edit_ctx, "tiny-edit", image_cfg_scale=1.5, denoising_strength=0.7,
                         steps=2)
    finally:
        del model.apply_model
    # cond, uncond with the image, uncond with a zero image: three rows of 4 latent channels
    assert seen_concat and all(shape == (3, 4, 8, 8) for shape in seen_concat)
    plain = img2img(edit_ctx, "tiny-edit", image_cfg_scale=1.0, denoising_strength=0.7, steps=2)
    assert parse_generation_parameters(guided.infotexts[0])["Image CFG scale"] == "1.5"
    assert np.abs(pixels(guided.images[0]) - pixels(plain.images[0])).max() > 0
