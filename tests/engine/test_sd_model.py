"""Loading tiny checkpoints of every family end to end: detection, strict loading, running."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from modules.engine.checkpoint_io import CheckpointLoadError
from modules.engine.sd_model import StableDiffusionModel, load_model, load_vae_weights
from modules.engine.text_encoders import CLIPTextEncoder, OpenCLIPTextEncoder
from tests.engine.tiny_checkpoints import KINDS, tiny_model_config, write_tiny_checkpoint

NON_WEIGHT_KEYS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                   "sqrt_one_minus_alphas_cumprod", "denoiser.sigmas")


def _weights_of_file(path: Path) -> dict[str, torch.Tensor]:
    return {key: value for key, value in load_file(str(path)).items()
            if key not in NON_WEIGHT_KEYS and not key.startswith("model_ema.")
            and not key.endswith("position_ids")}


def _tokens(pad: int) -> torch.Tensor:
    tokens = torch.full((1, 77), pad)
    tokens[0, :5] = torch.tensor([49406, 320, 1929, 539, 49407])   # <start> a photo of <end>
    return tokens


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_round_trip(tiny_checkpoint, kind: str) -> None:
    path = tiny_checkpoint(kind)
    model = load_model(path, v_prediction=kind == "sd2_v")
    expected_config = tiny_model_config(kind)
    assert model.config == expected_config
    assert model.prediction == expected_config.prediction
    assert (model.device, model.dtype) == (torch.device("cpu"), torch.float32)
    assert not any(parameter.requires_grad for parameter in model.parameters())

    # every weight is the file's value
    loaded = model.state_dict()
    file_weights = _weights_of_file(path)
    assert sorted(loaded) == sorted(file_weights)
    assert all(torch.equal(loaded[key], value) for key, value in file_weights.items())

    unet = expected_config.unet
    with torch.no_grad():
        latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        context_parts = []
        pooled = None
        for encoder, encoder_config in model.text_encoders:
            output = encoder.encode(_tokens(encoder_config.pad_token).expand(2, -1),
                                    layer=encoder_config.default_layer)
            context_parts.append(output.hidden)
            pooled = output.pooled
        context = torch.cat(context_parts, dim=-1)
        assert context.shape == (2, 77, unet.context_dim)
        vector = None
        if unet.adm_in_channels is not None:
            size_part = torch.zeros(2, unet.adm_in_channels - pooled.shape[-1])
            vector = torch.cat([pooled, size_part], dim=-1)
        concat = torch.randn(2, 5, 8, 8) if expected_config.variant == "inpaint" else None
        prediction = model.apply_model(latents, torch.tensor([999.0, 10.0]), context, vector, concat)
        assert prediction.shape == latents.shape and torch.isfinite(prediction).all()
        assert not torch.allclose(prediction[0], prediction[1])

        images = torch.rand(1, 3, 64, 48) * 2 - 1
        encoded = model.encode_first_stage(images)
        assert encoded.shape == (1, 4, 8, 6)
        assert model.decode_first_stage(encoded).shape == (1, 3, 64, 48)


def test_text_encoder_types_and_order(tiny_checkpoint) -> None:
    sdxl = load_model(tiny_checkpoint("sdxl"))
    (first, first_config), (second, second_config) = sdxl.text_encoders
    assert isinstance(first, CLIPTextEncoder) and isinstance(second, OpenCLIPTextEncoder)
    assert first is sdxl.conditioner.embedders[0] and second is sdxl.conditioner.embedders[1]
    assert (first_config.width, second_config.width) == (32, 48)
    refiner = load_model(tiny_checkpoint("sdxl_refiner"))
    (only, only_config), = refiner.text_encoders
    assert isinstance(only, OpenCLIPTextEncoder) and only_config.kind == "open_clip"
    sd2 = load_model(tiny_checkpoint("sd2_v"))
    assert sd2.prediction == "eps"   # v-prediction is the caller's decision, not the file's
    assert isinstance(sd2.cond_stage_model, OpenCLIPTextEncoder)


def test_alphas_cumprod_is_the_sd_schedule(tiny_checkpoint) -> None:
    model = load_model(tiny_checkpoint("sd1"))
    alphas_cumprod = model.alphas_cumprod
    assert alphas_cumprod.shape == (1000,) and alphas_cumprod.dtype == torch.float32
    assert alphas_cumprod.device == torch.device("cpu")
    assert alphas_cumprod[0].item() == pytest.approx(1 - 0.00085, rel=1e-6)
    # A1111 / k-diffusion show sigma_max 14.6146 and sigma_min 0.0292 for SD
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
    assert sigmas[-1].item() == pytest.approx(14.6146, abs=1e-3)
    assert sigmas[0].item() == pytest.approx(0.0292, abs=1e-4)
    assert "alphas_cumprod" not in model.state_dict()


def test_dtype_casting_and_half_precision_files(tmp_path: Path) -> None:
    half_file = write_tiny_checkpoint(tmp_path / "half.safetensors", "sd1", dtype=torch.float16)
    as_float = load_model(half_file)
    assert as_float.dtype == torch.float32
    assert as_float.first_stage_model.encoder.conv_in.weight.dtype == torch.float32
    as_half = load_model(half_file, dtype=torch.float16)
    assert as_half.dtype == torch.float16
    encoder = as_half.cond_stage_model.text_model
    assert encoder.embeddings.token_embedding.weight.dtype == torch.float16
    assert encoder.embeddings.position_ids.dtype == torch.int64


def test_files_without_optional_keys_load(tmp_path: Path) -> None:
    for kind in ("sd1", "sdxl"):
        path = write_tiny_checkpoint(tmp_path / f"{kind}.safetensors", kind, extra_keys=False)
        assert load_model(path).config == tiny_model_config(kind)


def test_sd2_file_without_logit_scale_loads(tmp_path: Path, tiny_checkpoint) -> None:
    state = load_file(str(tiny_checkpoint("sd2_v")))
    del state["cond_stage_model.model.logit_scale"]
    path = tmp_path / "converted.safetensors"
    save_file(state, str(path))
    model = load_model(path)
    logit_scale = model.cond_stage_model.model.logit_scale
    assert logit_scale.device.type == "cpu" and torch.isfinite(logit_scale)


def test_pickle_checkpoint_with_state_dict_wrapper(tmp_path: Path, tiny_checkpoint) -> None:
    state = load_file(str(tiny_checkpoint("sd1")))
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": state, "global_step": 840000}, path)
    model = load_model(path)
    assert model.config == tiny_model_config("sd1")


def test_legacy_clip_key_names_are_accepted(tmp_path: Path, tiny_checkpoint) -> None:
    old_prefix, new_prefix = "cond_stage_model.transformer.", "cond_stage_model.transformer.text_model."
    state = {key.replace(new_prefix, old_prefix): value
             for key, value in load_file(str(tiny_checkpoint("sd1"))).items()}
    path = tmp_path / "early.safetensors"
    save_file(state, str(path))
    assert load_model(path).config == tiny_model_config("sd1")


def _rewritten(tmp_path: Path, source: Path, name: str, change) -> Path:
    state = load_file(str(source))
    change(state)
    path = tmp_path / name
    save_file(state, str(path))
    return path


def test_missing_unexpected_and_mis_shaped_keys_are_named(tmp_path: Path, tiny_checkpoint) -> None:
    source = tiny_checkpoint("sd1")
    removed_key = "model.diffusion_model.middle_block.1.proj_out.weight"
    added_key = "model.diffusion_model.middle_block.1.extra.weight"
    reshaped_key = "first_stage_model.decoder.conv_out.bias"
    cases = {
        "removed.safetensors": (lambda state: state.pop(removed_key), removed_key, "missing"),
        "added.safetensors": (lambda state: state.update({added_key: torch.zeros(2)}),
                              added_key, "unexpected"),
        "reshaped.safetensors": (lambda state: state.update({reshaped_key: torch.zeros(4)}),
                                 reshaped_key, "mis-shaped"),
    }
    for name, (change, key, kind_of_problem) in cases.items():
        path = _rewritten(tmp_path, source, name, change)
        with pytest.raises(CheckpointLoadError) as caught:
            load_model(path)
        message = str(caught.value)
        assert str(path) in message and key in message and kind_of_problem in message, message


def test_many_missing_keys_are_listed_briefly(tmp_path: Path, tiny_checkpoint) -> None:
    def drop_first_stage(state: dict) -> None:
        for key in [key for key in state if key.startswith("first_stage_model.decoder.up.")]:
            del state[key]
    path = _rewritten(tmp_path, tiny_checkpoint("sd1"), "no_decoder.safetensors", drop_first_stage)
    with pytest.raises(CheckpointLoadError, match=r"missing keys: .*\(\+\d+ more\)"):
        load_model(path)


def test_non_checkpoints_are_refused_with_the_file_name(tmp_path: Path, tiny_vae_file: Path) -> None:
    with pytest.raises(CheckpointLoadError, match="no UNet keys") as caught:
        load_model(tiny_vae_file)
    assert str(tiny_vae_file) in str(caught.value)


def test_external_vae_replaces_the_checkpoint_vae(tiny_checkpoint, tiny_vae_file: Path) -> None:
    own = load_model(tiny_checkpoint("sd1"))
    replaced = load_model(tiny_checkpoint("sd1"), vae_path=tiny_vae_file)
    vae_file = load_file(str(tiny_vae_file))
    decoder_weight = replaced.first_stage_model.decoder.conv_out.weight
    assert torch.equal(decoder_weight, vae_file["decoder.conv_out.weight"])
    assert not torch.equal(own.first_stage_model.decoder.conv_out.weight, decoder_weight)
    # the UNet and text encoder are untouched
    assert torch.equal(own.unet.out[2].weight, replaced.unet.out[2].weight)

    latents = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(own.decode_first_stage(latents), replaced.decode_first_stage(latents))
        load_vae_weights(own, tiny_vae_file)
        torch.testing.assert_close(own.decode_first_stage(latents), replaced.decode_first_stage(latents))
    assert own.first_stage_model.config.scaling_factor == pytest.approx(0.18215)


def test_mismatched_vae_file_is_refused(tmp_path: Path, tiny_checkpoint) -> None:
    model = load_model(tiny_checkpoint("sd1"))
    wrong = {key[len("first_stage_model."):]: value
             for key, value in load_file(str(tiny_checkpoint("sd1"))).items()
             if key.startswith("first_stage_model.")}
    wrong["decoder.conv_out.weight"] = torch.zeros(3, 64, 3, 3)
    path = tmp_path / "wrong-vae.safetensors"
    save_file(wrong, str(path))
    with pytest.raises(CheckpointLoadError, match="decoder.conv_out.weight") as caught:
        load_vae_weights(model, path)
    assert str(path) in str(caught.value)


def test_meta_built_model_has_no_weights_in_memory() -> None:
    with torch.device("meta"):
        model = StableDiffusionModel(tiny_model_config("sdxl"))
    assert all(tensor.is_meta for tensor in model.state_dict().values())
    assert not model.alphas_cumprod.is_meta


def test_checkpoint_file_restores_its_own_vae(tiny_checkpoint, tiny_vae_file: Path) -> None:
    path = tiny_checkpoint("sd1")
    model = load_model(path, vae_path=tiny_vae_file)
    model.first_stage_model.to(torch.bfloat16)   # a separate VAE dtype is kept on reload
    load_vae_weights(model, path)                 # first_stage_model.* of the full checkpoint
    weight = model.first_stage_model.decoder.conv_out.weight
    assert weight.dtype == torch.bfloat16
    expected = load_file(str(path))["first_stage_model.decoder.conv_out.weight"]
    assert torch.equal(weight, expected.to(torch.bfloat16))


def test_header_is_checked_before_the_previous_model_is_released(tmp_path: Path,
                                                                 tiny_checkpoint) -> None:
    """on_validated (where a model switch releases the loaded model) runs only for a file whose
    header fits, and before its weights are read; a weight stored as integers is refused."""
    released: list[str] = []
    load_model(tiny_checkpoint("sd1"), on_validated=lambda: released.append("fits"))
    assert released == ["fits"]

    integer_key = "model.diffusion_model.out.2.bias"
    path = _rewritten(tmp_path, tiny_checkpoint("sd1"), "int_weight.safetensors",
                      lambda state: state.update({integer_key: state[integer_key].to(torch.int32)}))
    with pytest.raises(CheckpointLoadError, match="not floating point") as caught:
        load_model(path, on_validated=lambda: released.append("int"))
    assert integer_key in str(caught.value) and released == ["fits"]

    # the data is read after on_validated: a file that changes in between is read as it is then
    # (a model manager reloads the previous model when this fails, see test_model_switching)
    good = tiny_checkpoint("sd1")
    swapped = tmp_path / "swapped.safetensors"
    swapped.write_bytes(good.read_bytes())
    with pytest.raises(CheckpointLoadError, match="swapped.safetensors"):
        load_model(swapped, on_validated=lambda: swapped.write_bytes(b"gone"))
