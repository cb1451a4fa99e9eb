"""LoRA (kohya naming) on the tiny SD1.x and SDXL fixtures and the full-size SD1.5 key list: the
names land where A1111 puts them, multiplier 0 is the base model exactly, the patched model
equals a checkpoint with the LoRA merged in by this test, and the weights are bit-identical
after the job."""
from __future__ import annotations

import json

import pytest
import torch

from modules.engine.checkpoint_io import read_state_dict
from modules.engine.conditioning import PromptEncoder, build_batch_conditioning
from modules.engine.lora import LoraError, LoraPatch, build_network, lookup_keys, \
    target_index
from modules.engine.noise import ImageRNG
from modules.engine.sampling import sample
from modules.engine.sd_model import load_model
from modules.engine.tokenizer import ClipTokenizer
from tests.engine.tiny_checkpoints import write_tiny_checkpoint
from tests.ref_models import REF_DIR, load_ref


def shapes_of(state: dict) -> dict[str, torch.Size]:
    return {key: torch.Size(value.shape) for key, value in state.items()}


def test_the_full_size_kohya_examples_land_on_a1111s_sd15_weights():
    reference = json.loads((REF_DIR / "lora_sd15_kohya.json").read_text())
    shapes = {key: torch.Size(shape) for key, shape in load_ref("sd15")["tensors"].items()}
    index = target_index(shapes)
    for lora_name, ldm_key in reference["a1111_mapping"]["examples"].items():
        assert index[lookup_keys(lora_name)[0]].parameter == ldm_key, lora_name
    example = {key: torch.zeros(shape) for key, shape in reference["tensors"].items()}
    network = build_network("sd15-example", example, index, shapes)
    assert network.unmatched == []
    assert len(network.modules) == len({key.split(".")[0] for key in example})


def kohya_names_sd1(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """kohya module name → LDM weight key for the tiny SD1 checkpoint, from diffusers' own
    LDM → diffusers converter (kohya names the diffusers module paths) and transformers' CLIP
    paths, independently of the loader's mapping."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    from tests.engine.tiny_checkpoints import tiny_model_config

    unet = tiny_model_config("sd1").unet
    config = {"layers_per_block": unet.num_res_blocks,
              "down_block_types": ["CrossAttnDownBlock2D" if depth else "DownBlock2D"
                                   for depth in unet.transformer_depth],
              "up_block_types": ["CrossAttnUpBlock2D" if depth else "UpBlock2D"
                                 for depth in reversed(unet.transformer_depth)]}
    by_pointer = {value.data_ptr(): key for key, value in state.items()
                  if key.startswith("model.diffusion_model.")}
    converted = convert_ldm_unet_checkpoint(dict(state), config)
    names = {}
    for key, value in converted.items():
        if key.endswith(".weight") and value.ndim >= 2 and (
                ".attentions." in key or ".resnets." in key) and value.data_ptr() in by_pointer:
            names["lora_unet_" + key[:-len(".weight")].replace(".", "_")] = \
                by_pointer[value.data_ptr()]
    for key in state:
        prefix = "cond_stage_model.transformer."
        if key.startswith(prefix) and key.endswith("_proj.weight") or key.endswith("fc1.weight"):
            names["lora_te_" + key[len(prefix):-len(".weight")].replace(".", "_")] = key
    return names


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora")
    path = write_tiny_checkpoint(folder / "tiny.safetensors", "sd1", seed=1)
    model = load_model(path)
    conditioning = build_batch_conditioning(PromptEncoder(model, ClipTokenizer()),
                                            ["a red circle"], [""], 3, width=64, height=64)
    return path, model, conditioning


def random_lora(names: dict[str, str], state: dict[str, torch.Tensor], *, rank: int = 4,
                seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lora = {}
    for name, key in names.items():
        weight = state[key]
        inner = weight[0].numel()
        lora[f"{name}.lora_down.weight"] = torch.randn(rank, *weight.shape[1:],
                                                       generator=generator) * 0.1
        lora[f"{name}.lora_up.weight"] = torch.randn(weight.shape[0], rank,
                                                     *([1, 1] if weight.ndim == 4 else []),
                                                     generator=generator) * 0.1
        lora[f"{name}.alpha"] = torch.tensor(float(rank) / 2)
        assert inner
    return lora


def latent(model, conditioning) -> torch.Tensor:
    return sample(model, conditioning, ImageRNG((4, 8, 8), [7]), sampler_name="Euler",
                  scheduler="Automatic", steps=3, cfg_scale=7.0).latent


def test_a_kohya_lora_equals_the_merged_checkpoint_and_leaves_no_trace(sd1, tmp_path):
    path, model, conditioning = sd1
    state = read_state_dict(path)
    names = kohya_names_sd1(state)
    assert any(n.startswith("lora_unet_down_blocks_0_attentions_0") for n in names)
    assert any("_resnets_" in n for n in names) and any(n.startswith("lora_te_") for n in names)
    lora = random_lora(names, state)
    shapes = shapes_of(dict(model.state_dict()))
    network = build_network("tiny", lora, target_index(shapes), shapes,
                            res_blocks=model.config.unet.num_res_blocks)
    assert network.unmatched == [] and len(network.modules) == len(names)

    before = {key: value.clone() for key, value in model.state_dict().items()}
    plain = latent(model, conditioning)
    with LoraPatch(model, [(network, 0.0, 0.0)]):
        assert torch.equal(latent(model, conditioning), plain)
    with LoraPatch(model, [(network, 0.8, 0.8)]):
        patched = latent(model, conditioning)
    assert not torch.equal(patched, plain)
    after = model.state_dict()
    assert all(torch.equal(after[key], value) for key, value in before.items())

    # the reference: the LoRA merged into the checkpoint's weights here, then loaded as usual
    merged = dict(state)
    for name, key in names.items():
        down, up = lora[f"{name}.lora_down.weight"], lora[f"{name}.lora_up.weight"]
        scale = float(lora[f"{name}.alpha"]) / down.shape[0]
        merged[key] = state[key] + 0.8 * scale * (up.flatten(1) @ down.flatten(1)).reshape(
            state[key].shape)
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in merged.items()}, str(tmp_path / "merged.safetensors"))
    reference = load_model(tmp_path / "merged.safetensors")
    torch.testing.assert_close(patched, latent(reference, conditioning), rtol=1e-4, atol=1e-4)


def test_a_lora_for_another_model_is_refused_with_its_name(sd1, tmp_path):
    path, model, _ = sd1
    shapes = shapes_of(dict(model.state_dict()))
    wrong = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 999),
             "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(8, 4)}
    with pytest.raises(LoraError, match="proj_in.*another model"):
        build_network("wrong", wrong, target_index(shapes), shapes)
    nowhere = {"lora_unet_nowhere.lora_down.weight": torch.zeros(4, 8),
               "lora_unet_nowhere.lora_up.weight": torch.zeros(8, 4)}
    with pytest.raises(LoraError, match="none of its 1 modules"):
        build_network("nowhere", nowhere, target_index(shapes), shapes)


def kohya_names_sdxl(state: dict[str, torch.Tensor]) -> dict[str, tuple[str, slice | None]]:
    """kohya's SDXL names: the UNet by its LDM paths, te1 by transformers' CLIP paths, te2 by
    transformers' CLIP paths too (its q / k / v are row thirds of OpenCLIP's in_proj_weight)."""
    names: dict[str, tuple[str, slice | None]] = {}
    for key, value in state.items():
        if key.startswith("model.diffusion_model.") and key.endswith(".weight") and \
                value.ndim >= 2 and ("transformer_blocks" in key or "in_layers.2" in key):
            names["lora_unet_" + key[len("model.diffusion_model."):-7].replace(".", "_")] = \
                (key, None)
        prefix = "conditioner.embedders.0.transformer."
        if key.startswith(prefix) and key.endswith(("_proj.weight", "fc1.weight", "fc2.weight")):
            names["lora_te1_" + key[len(prefix):-7].replace(".", "_")] = (key, None)
        open_clip = "conditioner.embedders.1.model.transformer.resblocks."
        if key.startswith(open_clip) and key.endswith(".attn.in_proj_weight"):
            layer = key[len(open_clip):].split(".")[0]
            third = value.shape[0] // 3
            for slot, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                names[f"lora_te2_text_model_encoder_layers_{layer}_self_attn_{proj}"] = \
                    (key, slice(slot * third, (slot + 1) * third))
            base = f"{open_clip}{layer}."
            names[f"lora_te2_text_model_encoder_layers_{layer}_mlp_fc1"] = \
                (base + "mlp.c_fc.weight", None)
            names[f"lora_te2_text_model_encoder_layers_{layer}_self_attn_out_proj"] = \
                (base + "attn.out_proj.weight", None)
    return names


def test_an_sdxl_lora_with_both_text_encoders_equals_the_merged_checkpoint(tmp_path):
    path = write_tiny_checkpoint(tmp_path / "tiny_xl.safetensors", "sdxl", seed=2)
    model = load_model(path)
    state = read_state_dict(path)
    names = kohya_names_sdxl(state)
    generator = torch.Generator().manual_seed(3)
    lora = {}
    for name, (key, rows) in names.items():
        out = (rows.stop - rows.start) if rows else state[key].shape[0]
        lora[f"{name}.lora_down.weight"] = torch.randn(4, *state[key].shape[1:],
                                                       generator=generator) * 0.1
        lora[f"{name}.lora_up.weight"] = torch.randn(out, 4, *([1, 1] if state[key].ndim == 4
                                                                else []),
                                                     generator=generator) * 0.1
    shapes = shapes_of(dict(model.state_dict()))
    network = build_network("xl", lora, target_index(shapes), shapes)
    assert network.unmatched == [] and len(network.modules) == len(names)
    merged = {key: value.clone() for key, value in state.items()}
    for name, (key, rows) in names.items():
        down, up = lora[f"{name}.lora_down.weight"], lora[f"{name}.lora_up.weight"]
        target = merged[key][rows] if rows else merged[key]
        target += (up.flatten(1) @ down.flatten(1)).reshape(target.shape)   # alpha absent: 1
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in merged.items()}, str(tmp_path / "merged.safetensors"))
    reference = load_model(tmp_path / "merged.safetensors")
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with LoraPatch(model, [(network, 1.0, 1.0)]):
        patched = dict(model.state_dict())
        for key, value in reference.state_dict().items():
            torch.testing.assert_close(patched[key], value, rtol=0, atol=1e-6)
    assert all(torch.equal(model.state_dict()[key], value) for key, value in before.items())


def test_lycoris_loha_lokr_and_full_diffs_add_their_deltas(sd1):
    """Each kind's delta as LyCORIS defines it, computed here: LoHa (w1a·w1b) ⊙ (w2a·w2b),
    LoKr w1 ⊗ (w2a·w2b), a full diff as it is; alpha / dim scales LoHa and LoKr."""
    path, model, _ = sd1
    state = read_state_dict(path)
    names = kohya_names_sd1(state)
    linear = next(n for n in names if n.endswith("attn1_to_q"))
    conv = next(n for n in names if n.endswith("resnets_0_conv1"))
    full = next(n for n in names if n.endswith("attn2_to_k"))
    generator = torch.Generator().manual_seed(9)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.1

    w = {name: state[names[name]] for name in (linear, conv, full)}
    out, inner = w[linear].shape[0], w[linear][0].numel()
    lora = {f"{linear}.hada_w1_a": rand(out, 2), f"{linear}.hada_w1_b": rand(2, inner),
            f"{linear}.hada_w2_a": rand(out, 2), f"{linear}.hada_w2_b": rand(2, inner),
            f"{linear}.alpha": torch.tensor(1.0)}
    c_out, c_in, k = w[conv].shape[0], w[conv].shape[1], w[conv].shape[2]
    lora.update({f"{conv}.lokr_w1": rand(2, 2), f"{conv}.lokr_w2_a": rand(c_out // 2, 3),
                 f"{conv}.lokr_w2_b": rand(3, (c_in // 2) * k * k),
                 f"{conv}.alpha": torch.tensor(6.0)})
    lora[f"{full}.diff"] = rand(*w[full].shape)
    shapes = shapes_of(dict(model.state_dict()))
    network = build_network("lycoris", lora, target_index(shapes), shapes,
                            res_blocks=model.config.unet.num_res_blocks)
    assert sorted(m.kind for m in network.modules) == ["full", "loha", "lokr"]
    expected = {
        names[linear]: w[linear] + 0.5 * (1.0 / 2) * (
            (lora[f"{linear}.hada_w1_a"] @ lora[f"{linear}.hada_w1_b"])
            * (lora[f"{linear}.hada_w2_a"] @ lora[f"{linear}.hada_w2_b"])).reshape(w[linear].shape),
        names[conv]: w[conv] + 0.5 * (6.0 / 3) * torch.kron(
            lora[f"{conv}.lokr_w1"], lora[f"{conv}.lokr_w2_a"] @ lora[f"{conv}.lokr_w2_b"]
        ).reshape(w[conv].shape),
        names[full]: w[full] + 0.5 * lora[f"{full}.diff"],
    }
    with LoraPatch(model, [(network, 0.5, 0.5)]):
        patched = model.state_dict()
        for key, value in expected.items():
            torch.testing.assert_close(patched[key], value, rtol=0, atol=1e-6)
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in expected)


def test_dora_tucker_locon_and_ia3_follow_their_definitions(sd1):
    """DoRA: the merged weight W + dW renormalised per input column to `dora_scale`, the change
    from W scaled by alpha/r and the multiplier (A1111's order); Tucker LoCon: the core
    contracted with up and down; IA3: W scaled per output row (or per input column)."""
    path, model, _ = sd1
    state = read_state_dict(path)
    names = kohya_names_sd1(state)
    dora = next(n for n in names if n.endswith("attn2_to_v"))
    tucker = next(n for n in names if n.endswith("resnets_0_conv2"))
    ia3_out = next(n for n in names if n.endswith("ff_net_2"))
    ia3_in = next(n for n in names if n.endswith("attn1_to_k"))
    generator = torch.Generator().manual_seed(3)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.1

    w = {name: state[names[name]] for name in (dora, tucker, ia3_out, ia3_in)}
    out, inner = w[dora].shape
    magnitude = w[dora].norm(dim=0, keepdim=True) * (1 + rand(1, inner))
    lora = {f"{dora}.lora_down.weight": rand(2, inner), f"{dora}.lora_up.weight": rand(out, 2),
            f"{dora}.alpha": torch.tensor(1.0), f"{dora}.dora_scale": magnitude}
    c_out, c_in, k, _ = w[tucker].shape
    lora.update({f"{tucker}.lora_down.weight": rand(2, c_in, 1, 1),
                 f"{tucker}.lora_mid.weight": rand(2, 2, k, k),
                 f"{tucker}.lora_up.weight": rand(c_out, 2, 1, 1),
                 f"{tucker}.alpha": torch.tensor(2.0)})
    lora.update({f"{ia3_out}.weight": rand(w[ia3_out].shape[0]),
                 f"{ia3_out}.on_input": torch.tensor(False),
                 f"{ia3_in}.weight": rand(w[ia3_in].shape[1]),
                 f"{ia3_in}.on_input": torch.tensor(True)})
    shapes = shapes_of(dict(model.state_dict()))
    network = build_network("mixed", lora, target_index(shapes), shapes,
                            res_blocks=model.config.unet.num_res_blocks)
    assert sorted(m.kind for m in network.modules) == ["ia3", "ia3", "lora", "lora"]

    merged = w[dora] + lora[f"{dora}.lora_up.weight"] @ lora[f"{dora}.lora_down.weight"]
    redirected = merged / merged.norm(dim=0, keepdim=True) * magnitude
    core = lora[f"{tucker}.lora_mid.weight"]
    up, down = lora[f"{tucker}.lora_up.weight"][:, :, 0, 0], \
        lora[f"{tucker}.lora_down.weight"][:, :, 0, 0]
    tucker_delta = torch.zeros_like(w[tucker])
    for y in range(k):
        for x in range(k):
            tucker_delta[:, :, y, x] = up @ core[:, :, y, x] @ down
    expected = {
        names[dora]: w[dora] + 0.7 * 0.5 * (redirected - w[dora]),
        names[tucker]: w[tucker] + 0.7 * (2.0 / 2) * tucker_delta,
        names[ia3_out]: w[ia3_out] + 0.7 * w[ia3_out] * lora[f"{ia3_out}.weight"][:, None],
        names[ia3_in]: w[ia3_in] + 0.7 * w[ia3_in] * lora[f"{ia3_in}.weight"][None, :],
    }
    with LoraPatch(model, [(network, 0.7, 0.7)]):
        patched = model.state_dict()
        for key, value in expected.items():
            torch.testing.assert_close(patched[key], value, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in expected)


def test_peft_and_diffusers_names_land_where_the_kohya_names_do(sd1):
    """The same LoRA saved with PEFT's names (`unet.<dotted path>.lora_A/B`, no alpha: scale 1)
    and diffusers' (`.lora.down/up`) patches the same weights as kohya's."""
    path, model, _ = sd1
    state = read_state_dict(path)
    names = kohya_names_sd1(state)
    kohya = random_lora(names, state, rank=2, seed=5)
    peft, diffusers = {}, {}
    dotted = {name: name for name in names}
    for name in names:
        if name.startswith("lora_unet_"):
            rest = name[len("lora_unet_"):]
            for part in ("down_blocks", "up_blocks", "mid_block", "transformer_blocks",
                         "attentions", "resnets", "ff_net", "to_out", "proj_in", "proj_out"):
                rest = rest.replace(part, part.replace("_", "\0"))
            dotted[name] = "unet." + rest.replace("_", ".").replace("\0", "_")
        else:
            rest = name[len("lora_te_"):]
            for part in ("text_model", "self_attn", "q_proj", "k_proj", "v_proj", "out_proj"):
                rest = rest.replace(part, part.replace("_", "\0"))
            dotted[name] = "text_encoder." + rest.replace("_", ".").replace("\0", "_")
        down, up = kohya[f"{name}.lora_down.weight"], kohya[f"{name}.lora_up.weight"]
        peft[f"base_model.model.{dotted[name]}.lora_A.weight"] = down
        peft[f"base_model.model.{dotted[name]}.lora_B.weight"] = up
        diffusers[f"{dotted[name]}.lora.down.weight"] = down
        diffusers[f"{dotted[name]}.lora.up.weight"] = up
        kohya[f"{name}.alpha"] = torch.tensor(2.0)          # alpha = rank: scale 1, as PEFT's
    shapes = shapes_of(dict(model.state_dict()))
    index = target_index(shapes)
    results = []
    for lora in (kohya, peft, diffusers):
        network = build_network("n", lora, index, shapes,
                                res_blocks=model.config.unet.num_res_blocks)
        assert network.unmatched == [] and len(network.modules) == len(names)
        with LoraPatch(model, [(network, 1.0, 1.0)]):
            results.append({key: model.state_dict()[key].clone() for key in names.values()})
    for other in results[1:]:
        assert all(torch.equal(other[key], results[0][key]) for key in names.values())
    assert not torch.equal(results[0][names[next(iter(names))]], state[names[next(iter(names))]])


def test_oft_boft_norm_modules_and_bias_diffs(sd1):
    """OFT: each block of output rows turned by R = (I + Q)(I - Q)⁻¹, Q = B - Bᵀ (old LyCORIS
    `oft_diag`: R as stored), W' = Rᵀ·W per block; BOFT's butterfly levels keep the rows'
    Gram matrix (an orthogonal map); norm modules and full diffs change weight and bias."""
    path, model, _ = sd1
    state = read_state_dict(path)
    names = kohya_names_sd1(state)
    oft = next(n for n in names if n.endswith("attn1_to_q"))
    diag = next(n for n in names if n.endswith("attn2_to_q"))
    boft = next(n for n in names if n.endswith("attn1_to_v"))
    full = next(n for n in names if n.endswith("attn1_to_out_0"))
    norm, norm_key = oft.replace("attn1_to_q", "norm1"), names[oft].replace("attn1.to_q", "norm1")
    generator = torch.Generator().manual_seed(4)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.1

    out = state[names[oft]].shape[0]
    blocks = rand(4, out // 4, out // 4)
    rotation = torch.linalg.qr(torch.randn(out // 8, 8, 8, generator=generator)).Q
    lora = {f"{oft}.oft_blocks": blocks, f"{diag}.oft_diag": rotation,
            f"{boft}.oft_blocks": rand(2, out // 8, 8, 8),
            f"{full}.diff": rand(*state[names[full]].shape),
            f"{full}.diff_b": rand(state[names[full]].shape[0]),
            f"{norm}.w_norm": rand(state[norm_key].shape[0]),
            f"{norm}.b_norm": rand(state[norm_key].shape[0])}
    shapes = shapes_of(dict(model.state_dict()))
    network = build_network("mixed", lora, target_index(shapes), shapes,
                            res_blocks=model.config.unet.num_res_blocks)
    assert sorted(m.kind for m in network.modules) == ["full", "norm", "oft", "oft", "oft"]

    def turned(weight, rotations):
        size = rotations.shape[-1]
        return torch.cat([r.T @ weight[k * size:(k + 1) * size]
                          for k, r in enumerate(rotations)])

    eye = torch.eye(out // 4)
    cayley = torch.stack([torch.linalg.solve((eye - (b - b.T)).T, (eye + (b - b.T)).T).T
                          for b in blocks])

    def bias(key: str) -> str:
        return key[:-len("weight")] + "bias"

    expected = {
        names[oft]: state[names[oft]] + 0.5 * (turned(state[names[oft]], cayley)
                                               - state[names[oft]]),
        names[diag]: state[names[diag]] + 0.5 * (turned(state[names[diag]], rotation)
                                                 - state[names[diag]]),
        names[full]: state[names[full]] + 0.5 * lora[f"{full}.diff"],
        bias(names[full]): state[bias(names[full])] + 0.5 * lora[f"{full}.diff_b"],
        norm_key: state[norm_key] + 0.5 * lora[f"{norm}.w_norm"],
        bias(norm_key): state[bias(norm_key)] + 0.5 * lora[f"{norm}.b_norm"],
    }
    with LoraPatch(model, [(network, 0.5, 0.5)]):
        patched = {key: value.clone() for key, value in model.state_dict().items()}
    for key, value in expected.items():
        torch.testing.assert_close(patched[key], value, rtol=1e-5, atol=1e-6)
    w = state[names[boft]]
    with LoraPatch(model, [(network, 1.0, 1.0)]):
        turned_boft = model.state_dict()[names[boft]].clone()
    assert not torch.allclose(turned_boft, w)
    torch.testing.assert_close(turned_boft.T @ turned_boft, w.T @ w, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in expected)


def test_dyn_keeps_the_first_ranks_scaled_as_the_whole_lora(sd1):
    path, model, _ = sd1
    state = read_state_dict(path)
    names = kohya_names_sd1(state)
    name = next(n for n in names if n.endswith("attn2_to_k"))
    lora = random_lora({name: names[name]}, state, rank=4, seed=8)
    shapes = shapes_of(dict(model.state_dict()))
    network = build_network("dyn", lora, target_index(shapes), shapes,
                            res_blocks=model.config.unet.num_res_blocks).first_ranks(2)
    down, up = lora[f"{name}.lora_down.weight"], lora[f"{name}.lora_up.weight"]
    expected = state[names[name]] + 1.0 * (2.0 / 4) * (up[:, :2] @ down[:2])
    with LoraPatch(model, [(network, 1.0, 1.0)]):
        torch.testing.assert_close(model.state_dict()[names[name]], expected,
                                   rtol=1e-5, atol=1e-6)


def test_lycoris_kinds_on_sdxl_reach_the_bigg_slices_and_both_encoders(tmp_path):
    """LoHa on a q third of bigG's fused in_proj_weight, LoKr on CLIP-L, DoRA on a UNet linear
    of the tiny SDXL: each lands on its rows only, as computed here."""
    path = write_tiny_checkpoint(tmp_path / "tiny_xl.safetensors", "sdxl", seed=5)
    model = load_model(path)
    state = read_state_dict(path)
    names = kohya_names_sdxl(state)
    loha = next(n for n in names if n.startswith("lora_te2_") and n.endswith("_q_proj"))
    lokr = next(n for n in names if n.startswith("lora_te1_") and n.endswith("_v_proj"))
    dora = next(n for n in names if n.startswith("lora_unet_") and n.endswith("attn2_to_k"))
    generator = torch.Generator().manual_seed(6)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.1

    key, rows = names[loha]
    inner = state[key].shape[1]
    out = rows.stop - rows.start
    lora = {f"{loha}.hada_w1_a": rand(out, 2), f"{loha}.hada_w1_b": rand(2, inner),
            f"{loha}.hada_w2_a": rand(out, 2), f"{loha}.hada_w2_b": rand(2, inner)}
    lokr_key = names[lokr][0]
    o, i = state[lokr_key].shape
    lora.update({f"{lokr}.lokr_w1": rand(2, 2), f"{lokr}.lokr_w2": rand(o // 2, i // 2)})
    dora_key = names[dora][0]
    w = state[dora_key]
    magnitude = w.norm(dim=0, keepdim=True) * 1.1
    lora.update({f"{dora}.lora_down.weight": rand(2, w.shape[1]),
                 f"{dora}.lora_up.weight": rand(w.shape[0], 2), f"{dora}.dora_scale": magnitude})
    shapes = shapes_of(dict(model.state_dict()))
    network = build_network("xl-lycoris", lora, target_index(shapes), shapes)
    assert sorted(m.kind for m in network.modules) == ["loha", "lokr", "lora"]
    expected = {key: state[key].clone(), lokr_key: state[lokr_key].clone()}
    expected[key][rows] += (lora[f"{loha}.hada_w1_a"] @ lora[f"{loha}.hada_w1_b"]) * \
        (lora[f"{loha}.hada_w2_a"] @ lora[f"{loha}.hada_w2_b"])
    expected[lokr_key] += torch.kron(lora[f"{lokr}.lokr_w1"], lora[f"{lokr}.lokr_w2"])
    merged = w + lora[f"{dora}.lora_up.weight"] @ lora[f"{dora}.lora_down.weight"]
    expected[dora_key] = merged / merged.norm(dim=0, keepdim=True) * magnitude
    with LoraPatch(model, [(network, 1.0, 1.0)]):
        patched = {k: v.clone() for k, v in model.state_dict().items()}
    for name, value in expected.items():
        torch.testing.assert_close(patched[name], value, rtol=1e-5, atol=1e-6)
    assert torch.equal(patched[key][rows.stop:], state[key][rows.stop:])   # k and v untouched
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in expected)
