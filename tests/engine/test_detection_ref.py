"""Detection and model layout against the key/shape lists of real checkpoints (meta device)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from modules.engine.detection import DetectionError, detect_model_config, detect_vae_config
from modules.engine.sd_model import StableDiffusionModel
from modules.engine.vae import AutoencoderKL

REF_DIR = Path("/work/shared/ref")
MODEL_REFS = ("sd15", "sd15_inpaint", "sd21_v", "sdxl_base")


def _ref(name: str) -> dict:
    return json.loads((REF_DIR / f"{name}.json").read_text())


def _meta_state_dict(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(tensor.shape) for key, tensor in module.state_dict().items()}


def _assert_layout_equal(got: dict[str, tuple[int, ...]], expected: dict[str, list[int]]) -> None:
    expected = {key: tuple(shape) for key, shape in expected.items()}
    assert sorted(set(expected) - set(got)) == [], "missing keys"
    assert sorted(set(got) - set(expected)) == [], "unexpected keys"
    assert {key: (got[key], shape) for key, shape in expected.items() if got[key] != shape} == {}


@pytest.mark.parametrize("ref_name", MODEL_REFS)
@pytest.mark.parametrize("with_optional", [False, True])
def test_model_built_from_detection_has_the_file_layout(ref_name: str, with_optional: bool) -> None:
    ref = _ref(ref_name)
    shapes = dict(ref["tensors"])
    if with_optional:
        shapes.update(ref["optional_tensors"])
    config = detect_model_config(_meta_state_dict(shapes))
    with torch.device("meta"):
        model = StableDiffusionModel(config)
    _assert_layout_equal(_shapes(model), ref["tensors"])


def test_sd15_details() -> None:
    config = detect_model_config(_meta_state_dict(_ref("sd15")["tensors"]))
    assert (config.family, config.variant, config.prediction) == ("sd1", "normal", "eps")
    unet = config.unet
    assert (unet.in_channels, unet.model_channels, unet.channel_mult) == (4, 320, (1, 2, 4, 4))
    assert (unet.num_res_blocks, unet.transformer_depth) == (2, (1, 1, 1, 0))
    assert (unet.context_dim, unet.num_heads, unet.num_head_channels) == (768, 8, -1)
    assert not unet.use_linear_in_transformer and unet.adm_in_channels is None
    assert config.vae.scaling_factor == pytest.approx(0.18215)
    (prefix, clip), = config.text_encoders
    assert prefix == "cond_stage_model."
    assert (clip.kind, clip.width, clip.layers, clip.heads, clip.intermediate) == \
        ("clip_l", 768, 12, 12, 3072)
    assert (clip.vocab_size, clip.max_positions, clip.projection_dim) == (49408, 77, None)
    assert (clip.act, clip.default_layer, clip.pad_token) == ("quick_gelu", -1, 49407)


def test_sd15_inpaint_is_detected_from_nine_input_channels() -> None:
    config = detect_model_config(_meta_state_dict(_ref("sd15_inpaint")["tensors"]))
    assert (config.family, config.variant, config.unet.in_channels) == ("sd1", "inpaint", 9)


def test_instruct_pix2pix_is_detected_from_eight_input_channels() -> None:
    shapes = dict(_ref("sd15")["tensors"])
    shapes["model.diffusion_model.input_blocks.0.0.weight"] = [320, 8, 3, 3]
    assert detect_model_config(_meta_state_dict(shapes)).variant == "edit"


@pytest.mark.parametrize("v_prediction,expected", [(None, "eps"), (False, "eps"), (True, "v")])
def test_sd21_details_and_prediction_from_the_caller(v_prediction, expected) -> None:
    config = detect_model_config(_meta_state_dict(_ref("sd21_v")["tensors"]),
                                 v_prediction=v_prediction)
    assert (config.family, config.variant, config.prediction) == ("sd2", "normal", expected)
    unet = config.unet
    assert (unet.context_dim, unet.num_head_channels, unet.use_linear_in_transformer) == \
        (1024, 64, True)
    (prefix, open_clip), = config.text_encoders
    assert prefix == "cond_stage_model."
    assert (open_clip.kind, open_clip.width, open_clip.layers, open_clip.heads) == \
        ("open_clip", 1024, 24, 16)
    assert (open_clip.intermediate, open_clip.projection_dim, open_clip.act) == (4096, 1024, "gelu")
    assert (open_clip.default_layer, open_clip.pad_token) == (-2, 0)


def test_sd21_converted_from_diffusers_without_last_layer() -> None:
    """Such files lack resblocks.23, text_projection and logit_scale; the stored last layer is
    then the one SD2 conditions on."""
    prefix = "cond_stage_model.model."
    shapes = {key: shape for key, shape in _ref("sd21_v")["tensors"].items()
              if not key.startswith((f"{prefix}transformer.resblocks.23.",
                                     f"{prefix}text_projection", f"{prefix}logit_scale"))}
    config = detect_model_config(_meta_state_dict(shapes))
    open_clip = config.text_encoders[0][1]
    assert (open_clip.layers, open_clip.projection_dim, open_clip.default_layer) == (23, None, -1)
    with torch.device("meta"):
        model = StableDiffusionModel(config)
    # logit_scale stays in the model (the loader initialises it when a file lacks it)
    _assert_layout_equal(_shapes(model), {**shapes, f"{prefix}logit_scale": []})


def test_sdxl_base_details() -> None:
    config = detect_model_config(_meta_state_dict(_ref("sdxl_base")["tensors"]))
    assert (config.family, config.variant, config.is_sdxl) == ("sdxl", "normal", True)
    unet = config.unet
    assert (unet.adm_in_channels, unet.context_dim, unet.channel_mult) == (2816, 2048, (1, 2, 4))
    assert (unet.transformer_depth, unet.transformer_depth_middle) == ((0, 2, 10), 10)
    assert unet.transformer_depth_output == (10, 10, 10, 2, 2, 2, 0, 0, 0)
    assert config.vae.scaling_factor == pytest.approx(0.13025)
    (prefix_l, clip), (prefix_g, big_g) = config.text_encoders
    assert (prefix_l, prefix_g) == ("conditioner.embedders.0.", "conditioner.embedders.1.")
    assert (clip.kind, clip.width, clip.act, clip.default_layer, clip.pad_token) == \
        ("clip_l", 768, "quick_gelu", -2, 49407)
    assert (big_g.kind, big_g.width, big_g.layers, big_g.heads, big_g.intermediate) == \
        ("open_clip", 1280, 32, 20, 5120)
    assert (big_g.projection_dim, big_g.act, big_g.pad_token) == (1280, "gelu", 0)
    assert clip.width + big_g.width == unet.context_dim


def test_standalone_vae_layout_and_ignored_keys() -> None:
    ref = _ref("vae_sd")
    vae_keys = _meta_state_dict(ref["tensors"])
    config = detect_vae_config(vae_keys)
    assert (config.ch, config.ch_mult, config.num_res_blocks) == (128, (1, 2, 4, 4), 2)
    assert (config.z_channels, config.embed_dim, config.attn_linear) == (4, 4, False)
    with torch.device("meta"):
        vae = AutoencoderKL(config)
    _assert_layout_equal(_shapes(vae), ref["tensors"])

    training_file = {**vae_keys, **_meta_state_dict(ref["optional_tensors"]),
                     "loss.logvar": torch.empty((), device="meta"),
                     "loss.discriminator.main.0.weight": torch.empty(64, 3, 4, 4, device="meta")}
    assert detect_vae_config(training_file) == config
    with_prefix = {f"first_stage_model.{key}": value for key, value in vae_keys.items()}
    assert detect_vae_config(with_prefix) == config
    assert detect_vae_config(vae_keys, scaling_factor=0.13025).scaling_factor == 0.13025


def test_vae_inside_a_full_checkpoint_matches_the_standalone_layout() -> None:
    config = detect_model_config(_meta_state_dict(_ref("sd15")["tensors"]))
    assert config.vae == detect_vae_config(_meta_state_dict(_ref("vae_sd")["tensors"]))


def test_unrecognised_state_dicts_raise_detection_error() -> None:
    sd15 = _meta_state_dict(_ref("sd15")["tensors"])
    with pytest.raises(DetectionError, match="no UNet keys"):
        detect_model_config({})
    with pytest.raises(DetectionError, match="no UNet keys"):
        detect_model_config(_meta_state_dict(_ref("vae_sd")["tensors"]))
    no_text = {key: value for key, value in sd15.items() if not key.startswith("cond_stage_model.")}
    with pytest.raises(DetectionError, match="no text encoder keys"):
        detect_model_config(no_text)
    no_vae = {key: value for key, value in sd15.items() if not key.startswith("first_stage_model.")}
    with pytest.raises(DetectionError, match="no VAE keys"):
        detect_model_config(no_vae)
    with pytest.raises(DetectionError, match="not a VAE"):
        detect_vae_config({"lora_unet_down.alpha": torch.empty(())})
    assert issubclass(DetectionError, ValueError)
