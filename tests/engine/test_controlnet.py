"""ControlNet in the engine: both file conventions load strictly (tiny SD1.x / SD2.x / SDXL files,
and the full-size SD1.5 key list on the meta device), and as a per-job patch it steers sampling:
weight 0 or a window outside the run gives the plain image exactly, weight 1 changes it, units
stack, and "ControlNet is more important" leaves the unconditional rows alone."""
from __future__ import annotations

import json

import pytest
import torch

from modules.engine.checkpoint_io import CheckpointLoadError
from modules.engine.conditioning import PromptEncoder, build_batch_conditioning
from modules.engine.controlnet import CONTROL_MODES, ControlNetModel, ControlNetPatch, \
    ControlUnitPatch, controlnet_weights, detect_controlnet_config, load_controlnet
from modules.engine.noise import ImageRNG
from modules.engine.sampling import sample
from modules.engine.sd_model import load_model
from modules.engine.tokenizer import ClipTokenizer
from tests.engine.tiny_checkpoints import write_tiny_checkpoint, write_tiny_controlnet
from tests.ref_models import REF_DIR


@pytest.mark.parametrize("kind", ["sd1", "sd2_v", "sdxl"])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_tiny_controlnets_load_strictly_in_both_conventions(tmp_path, kind, suffix):
    path = write_tiny_controlnet(tmp_path / f"control_{kind}{suffix}", kind, seed=3)
    model = load_controlnet(path)
    family = {"sd1": "sd1", "sd2_v": "sd2", "sdxl": "sdxl"}[kind]
    assert model.control_config.family == family
    assert len(model.zero_convs) == len(model.input_blocks)


def test_the_full_size_sd15_controlnet_key_list_loads_strictly_on_meta():
    tensors = json.loads((REF_DIR / "controlnet_sd15.json").read_text())["tensors"]
    weights = controlnet_weights({key: torch.empty(shape, device="meta")
                                  for key, shape in tensors.items()})
    config = detect_controlnet_config(weights)
    assert (config.family, config.unet.model_channels, config.unet.context_dim,
            config.hint_channels) == ("sd1", 320, 768, 3)
    with torch.device("meta"):
        model = ControlNetModel(config)
    model.load_state_dict(weights, strict=True, assign=True)
    assert sum(t.numel() for t in model.parameters()) == 361_279_120


def test_a_file_that_is_no_controlnet_is_refused_with_its_name(tmp_path):
    path = write_tiny_checkpoint(tmp_path / "not-a-controlnet.safetensors", "sd1")
    with pytest.raises(CheckpointLoadError, match="not-a-controlnet.safetensors.*not a ControlNet"):
        load_controlnet(path)


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    folder = tmp_path_factory.mktemp("controlnet")
    model = load_model(write_tiny_checkpoint(folder / "tiny.safetensors", "sd1", seed=1))
    controls = [load_controlnet(write_tiny_controlnet(folder / f"c{seed}.pth", "sd1", seed=seed))
                for seed in (4, 5)]
    encoder = PromptEncoder(model, ClipTokenizer())
    conditioning = build_batch_conditioning(encoder, ["a red circle"], [""], 3, width=64,
                                            height=64)
    return model, controls, conditioning


def hint(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(1, 3, 64, 64, generator=generator) > 0.5).float()


def run(sd1, units: list[ControlUnitPatch] | None) -> torch.Tensor:
    model, _, conditioning = sd1
    rng = ImageRNG((4, 8, 8), [7])
    patch = ControlNetPatch(units) if units is not None else None
    return sample(model, conditioning, rng, sampler_name="Euler", scheduler="Automatic", steps=3,
                  cfg_scale=7.0, control=patch).latent


def test_weight_zero_or_a_window_outside_the_run_gives_the_plain_image_exactly(sd1):
    _, (control, _), _ = sd1
    plain = run(sd1, None)
    assert torch.equal(run(sd1, [ControlUnitPatch(control, hint(), weight=0.0)]), plain)
    late = ControlUnitPatch(control, hint(), guidance_start=0.9, guidance_end=1.0)
    assert torch.equal(run(sd1, [late]), plain)          # 3 steps: at 0, 1/3, 2/3
    steered = run(sd1, [ControlUnitPatch(control, hint(), weight=1.0)])
    assert (steered - plain).abs().max() > 1e-3
    assert torch.equal(run(sd1, None), plain)            # nothing stays behind in the model


def test_two_units_stack(sd1):
    model, (first, second), _ = sd1
    x, t, context = torch.randn(2, 4, 8, 8), torch.tensor([500.0, 500.0]), torch.randn(2, 77, 32)
    units = [ControlUnitPatch(first, hint(1), weight=0.6), ControlUnitPatch(second, hint(2))]
    both = ControlNetPatch(units)(model.config.unet, x, t, context, None)
    alone = [ControlNetPatch([unit])(model.config.unet, x, t, context, None) for unit in units]
    for total, a, b in zip(both, *alone):
        torch.testing.assert_close(total, a + b)
    assert run(sd1, units).ne(run(sd1, units[:1])).any()


def test_control_modes_scale_and_place_the_residuals(sd1):
    model, (control, _), _ = sd1
    x, t, context = torch.randn(2, 4, 8, 8), torch.tensor([500.0, 500.0]), torch.randn(2, 77, 32)
    balanced = ControlNetPatch([ControlUnitPatch(control, hint(), weight=0.5)])
    reference = balanced(model.config.unet, x, t, context, None)

    prompt = ControlNetPatch([ControlUnitPatch(control, hint(), weight=0.5,
                                               control_mode=CONTROL_MODES[1])])
    soft = prompt(model.config.unet, x, t, context, None)
    count = len(soft)
    for index, (residual, full) in enumerate(zip(soft, reference)):
        torch.testing.assert_close(residual, full * 0.825 ** (count - 1 - index))

    strong = ControlNetPatch([ControlUnitPatch(control, hint(), weight=0.5,
                                               control_mode=CONTROL_MODES[2])])
    strong.begin_call(0.0, torch.tensor([False, True]))     # row 1 is the uncond
    for residual, full in zip(strong(model.config.unet, x, t, context, None), reference):
        torch.testing.assert_close(residual[0], full[0])
        assert residual[1].abs().max() == 0


@pytest.mark.parametrize("kind", ["sd1", "sdxl"])
def test_diffusers_named_controlnets_load_as_the_same_network(tmp_path, kind):
    """diffusers' own converter (LDM → diffusers names) makes the file most SDXL ControlNets
    ship as; loading it must give back exactly the LDM tensors."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING, \
        convert_controlnet_checkpoint
    from safetensors.torch import save_file

    from tests.engine.tiny_checkpoints import tiny_controlnet_state, tiny_model_config

    ldm = tiny_controlnet_state(kind, seed=8)
    unet = tiny_model_config(kind).unet
    config = {"layers_per_block": unet.num_res_blocks,
              "down_block_types": ["CrossAttnDownBlock2D"] * len(unet.channel_mult)}
    named = convert_controlnet_checkpoint(dict(ldm), config)
    # SDXL's label embedding: diffusers' converter leaves it to its pipeline loader, which maps
    # it with this table of its own
    for diffusers_key, ldm_key in DIFFUSERS_TO_LDM_MAPPING["controlnet"][
            "addition_embed_type"].items():
        if ldm_key in ldm:
            named[diffusers_key] = ldm[ldm_key]
    assert "controlnet_cond_embedding.conv_in.weight" in named and "input_hint_block.0.weight" \
        not in named
    path = tmp_path / f"diffusers_{kind}.safetensors"
    save_file({key: value.contiguous() for key, value in named.items()}, str(path))
    loaded = load_controlnet(path).state_dict()
    assert set(loaded) == set(ldm)
    for key, value in ldm.items():
        assert torch.equal(loaded[key], value), key


def test_a_region_mask_confines_the_residuals(sd1):
    model, (control, _), _ = sd1
    x, t, context = torch.randn(2, 4, 8, 8), torch.tensor([500.0, 500.0]), torch.randn(2, 77, 32)
    region = torch.zeros(1, 1, 64, 64)
    region[..., 32:] = 1.0                                 # the right half of the image
    whole = ControlNetPatch([ControlUnitPatch(control, hint())])(model.config.unet, x, t,
                                                                 context, None)
    masked = ControlNetPatch([ControlUnitPatch(control, hint(), region=region)])(
        model.config.unet, x, t, context, None)
    for full, part in zip(whole, masked):
        half = part.shape[-1] // 2
        if half:
            assert part[..., :half].abs().max() == 0
            torch.testing.assert_close(part[..., half:], full[..., half:])
