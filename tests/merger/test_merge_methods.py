"""The merge methods on tiny checkpoints of every architecture: each output tensor is the formula
of A1111's Checkpoint Merger, M = 0 / 1 give A / B exactly, and A1111's rules for keys, input
channels, fp16, discarded weights and baked-in VAEs hold."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from modules.engine.checkpoint_merge import MergeError
from modules.engine.sd_model import load_model
from modules.merger.request import MergeRequest
from tests.engine.tiny_checkpoints import write_tiny_checkpoint, write_tiny_vae
from tests.merger.conftest import merged_keys

ARCHITECTURES = ["sd1", "sd2_v", "sdxl"]


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_weighted_sum_is_a_times_one_minus_m_plus_b_times_m(models, kind):
    a_path, b_path = models.write("a.safetensors", kind, 1), models.write("b.safetensors", kind, 2)
    result = models.merger().merge(MergeRequest("a.safetensors", "b.safetensors",
                                                interp_method="Weighted sum", multiplier=0.3))
    assert result.name == "0.7(a) + 0.3(b).safetensors"
    out, a, b = models.load(result.filename), models.load(a_path), models.load(b_path)
    assert list(out) == list(a)             # A's keys, in A's order
    interpolated = merged_keys(a, b)
    assert len(interpolated) > 100
    for key in interpolated:
        torch.testing.assert_close(out[key], (1 - 0.3) * a[key] + 0.3 * b[key],
                                   rtol=0, atol=1e-6)
    for key in set(a) - set(interpolated):  # schedule buffers, position ids: A's, untouched
        assert torch.equal(out[key], a[key]), key


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_add_difference_is_a_plus_b_minus_c_times_m(models, kind):
    paths = [models.write(f"{name}.safetensors", kind, seed)
             for name, seed in (("a", 1), ("b", 2), ("c", 3))]
    result = models.merger().merge(MergeRequest("a", "b", "c", interp_method="Add difference",
                                                multiplier=0.5))
    assert result.name == "a + 0.5(b - c).safetensors"
    out, a, b, c = (models.load(p) for p in [result.filename, *paths])
    for key in merged_keys(a, b):
        torch.testing.assert_close(out[key], a[key] + 0.5 * (b[key] - c[key]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_multiplier_zero_gives_a_and_one_gives_b_exactly(models, kind):
    a_path, b_path = models.write("a.safetensors", kind, 1), models.write("b.safetensors", kind, 2)
    merger = models.merger()
    zero = models.load(merger.merge(MergeRequest("a", "b", multiplier=0.0,
                                                 custom_name="zero")).filename)
    one = models.load(merger.merge(MergeRequest("a", "b", multiplier=1.0,
                                                custom_name="one")).filename)
    a, b = models.load(a_path), models.load(b_path)
    assert all(torch.equal(zero[key], a[key]) for key in a)
    for key in merged_keys(a, b):
        assert torch.equal(one[key], b[key]), key


def test_no_interpolation_resaves_a_as_fp16_with_discarded_weights_left_out(models):
    a_path = models.write("a.safetensors", "sd1", 1)
    result = models.merger().merge(MergeRequest(
        "a", interp_method="No interpolation", save_as_half=True,
        discard_weights=r"^model_ema\.|alphas_cumprod", custom_name="a-fp16"))
    out, a = models.load(result.filename), models.load(a_path)
    assert not [key for key in out if key.startswith("model_ema.") or "alphas_cumprod" in key]
    assert {"model_ema.decay", "alphas_cumprod", "sqrt_alphas_cumprod"} <= set(result.discarded)
    for key, value in out.items():
        expected = a[key].half() if a[key].dtype == torch.float32 else a[key]
        assert value.dtype == expected.dtype and torch.equal(value, expected), key


def test_save_as_half_halves_the_merged_tensors(models):
    a_path, b_path = models.write("a.safetensors", seed=1), models.write("b.safetensors", seed=2)
    out = models.load(models.merger().merge(MergeRequest("a", "b", save_as_half=True)).filename)
    a, b = models.load(a_path), models.load(b_path)
    for key in merged_keys(a, b):
        assert out[key].dtype == torch.float16
        torch.testing.assert_close(out[key], (0.7 * a[key] + 0.3 * b[key]).half())
    assert out["alphas_cumprod"].dtype == torch.float32   # A1111 halves only what it merged


def test_inpainting_a_merges_its_first_four_input_channels_with_a_normal_b(models):
    a_path = models.write("inpaint.safetensors", "sd1_inpaint", 1)
    b_path = models.write("normal.safetensors", "sd1", 2)
    c_path = models.write("base.safetensors", "sd1", 3)
    result = models.merger().merge(MergeRequest("inpaint", "normal", "base",
                                                interp_method="Add difference", multiplier=1.0))
    assert result.is_inpainting
    assert result.name == "inpaint + 1.0(normal - base).inpainting.safetensors"
    out, a, b, c = (models.load(p) for p in (result.filename, a_path, b_path, c_path))
    key = "model.diffusion_model.input_blocks.0.0.weight"
    assert out[key].shape[1] == 9
    torch.testing.assert_close(out[key][:, :4], a[key][:, :4] + (b[key] - c[key]), atol=1e-6,
                               rtol=0)
    assert torch.equal(out[key][:, 4:], a[key][:, 4:])
    model = load_model(result.filename)              # loads as an inpainting model
    assert model.config.variant == "inpaint"


def test_a_normal_a_with_an_inpainting_b_is_refused(models):
    models.write("normal.safetensors", "sd1", 1)
    models.write("inpaint.safetensors", "sd1_inpaint", 2)
    with pytest.raises(MergeError, match="A must be the inpainting model"):
        models.merger().merge(MergeRequest("normal", "inpaint"))
    assert sorted(p.name for p in models.dir.iterdir()) == ["inpaint.safetensors",
                                                           "normal.safetensors"]


def test_sd1_with_sdxl_is_refused_naming_both_architectures(models):
    models.write("classic.safetensors", "sd1", 1)
    models.write("xl.safetensors", "sdxl", 2)
    with pytest.raises(MergeError) as refused:
        models.merger().merge(MergeRequest("classic", "xl"))
    message = str(refused.value)
    assert "classic.safetensors (SD1.x)" in message and "xl.safetensors (SDXL)" in message


def test_a_baked_in_vae_replaces_the_vae_tensors(models):
    a_path, b_path = models.write("a.safetensors", seed=1), models.write("b.safetensors", seed=2)
    vae_dir = models.data / "models" / "VAE"
    vae_dir.mkdir(parents=True)
    vae = models.load(write_tiny_vae(vae_dir / "sharp.vae.safetensors", seed=7))
    result = models.merger().merge(MergeRequest("a", "b", bake_in_vae="sharp.vae.safetensors"))
    out, a, b = models.load(result.filename), models.load(a_path), models.load(b_path)
    vae_keys = [key for key in out if key.startswith("first_stage_model.")]
    assert len(vae_keys) > 50
    for key in vae_keys:
        assert torch.equal(out[key], vae[key.removeprefix("first_stage_model.")]), key
    unet_key = "model.diffusion_model.out.2.weight"
    torch.testing.assert_close(out[unet_key], 0.7 * a[unet_key] + 0.3 * b[unet_key])
    recipe = json.loads(safe_open(result.filename, "pt").metadata()["sd_merge_recipe"])
    assert recipe["bake_in_vae"] == "sharp.vae.safetensors"


def test_the_metadata_holds_a1111s_merge_recipe_and_the_source_hashes(models):
    models.write("a.safetensors", "sd1", 1, metadata={"modelspec.title": "Anime A"})
    models.write("b.safetensors", "sd1", 2)
    merger = models.merger()
    result = merger.merge(MergeRequest("a", "b", multiplier=0.25, metadata_json='{"note": "x"}'))
    with safe_open(result.filename, "pt") as handle:
        metadata = handle.metadata()
    a, b = merger.find_model("a"), merger.find_model("b")
    recipe = json.loads(metadata["sd_merge_recipe"])
    assert recipe == {
        "type": "webui", "primary_model_hash": a.sha256, "secondary_model_hash": b.sha256,
        "tertiary_model_hash": None, "interp_method": "Weighted sum", "multiplier": 0.25,
        "save_as_half": False, "custom_name": "", "config_source": 0, "bake_in_vae": "None",
        "discard_weights": "", "is_inpainting": False, "is_instruct_pix2pix": False}
    assert json.loads(metadata["sd_merge_models"]) == {
        a.sha256: {"name": "a.safetensors", "legacy_hash": a.legacy_hash, "sd_merge_recipe": None},
        b.sha256: {"name": "b.safetensors", "legacy_hash": b.legacy_hash, "sd_merge_recipe": None}}
    assert metadata["modelspec.title"] == "Anime A"     # copied from the inputs
    assert metadata["note"] == "x" and metadata["format"] == "pt"
    assert result.sha256 and result.title == f"{result.name} [{result.sha256[:10]}]"


def test_the_merged_checkpoint_loads_and_generates(models):
    models.write("a.safetensors", "sd1", 1)
    models.write("b.safetensors", "sd1", 2)
    result = models.merger().merge(MergeRequest("a", "b", save_as_half=True))
    model = load_model(result.filename)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    context = torch.zeros(1, 77, 32)
    with torch.no_grad():
        eps = model.apply_model(latent, torch.tensor([500]), context)
        image = model.decode_first_stage(latent)
    assert eps.shape == latent.shape and torch.isfinite(eps).all()
    assert image.shape == (1, 3, 64, 64) and torch.isfinite(image).all()


def write_instruct_pix2pix(path, seed: int):
    """A tiny SD1 checkpoint whose UNet takes 8 input channels (instruct-pix2pix)."""
    write_tiny_checkpoint(path, "sd1", seed=seed)
    state = load_file(str(path))
    key = "model.diffusion_model.input_blocks.0.0.weight"
    extra = torch.randn(state[key].shape, generator=torch.Generator().manual_seed(seed))
    state[key] = torch.cat([state[key], extra], dim=1).contiguous()
    save_file(state, str(path))
    return path


def test_instruct_pix2pix_a_merges_its_first_four_input_channels(models):
    a_path = write_instruct_pix2pix(models.dir / "edit.safetensors", 1)
    b_path = models.write("normal.safetensors", "sd1", 2)
    result = models.merger().merge(MergeRequest("edit", "normal", multiplier=0.5))
    assert result.is_instruct_pix2pix and not result.is_inpainting
    assert result.name == "0.5(edit) + 0.5(normal).instruct-pix2pix.safetensors"
    out, a, b = (models.load(p) for p in (result.filename, a_path, b_path))
    key = "model.diffusion_model.input_blocks.0.0.weight"
    torch.testing.assert_close(out[key][:, :4], 0.5 * a[key][:, :4] + 0.5 * b[key])
    assert torch.equal(out[key][:, 4:], a[key][:, 4:])
    assert load_model(result.filename).config.variant == "edit"
    with pytest.raises(MergeError, match="A must be the instruct-pix2pix model"):
        models.merger().merge(MergeRequest("normal", "edit", custom_name="wrong-order"))


def test_keys_of_only_one_model_follow_a(models):
    a_path = models.write("a.safetensors", "sd1", 1)
    b_path = models.write("b.safetensors", "sd1", 2, extra_keys=False)   # no schedule buffers
    b = load_file(str(b_path))
    b["model.only_in_b"] = torch.ones(3)
    save_file(b, str(b_path))
    out = models.load(models.merger().merge(MergeRequest("a", "b")).filename)
    a = models.load(a_path)
    assert "model.only_in_b" not in out            # the output has A's keys
    for key in ("alphas_cumprod", "model_ema.decay",
                "cond_stage_model.transformer.text_model.embeddings.position_ids"):
        assert torch.equal(out[key], a[key])       # only in A (or never merged): A's
