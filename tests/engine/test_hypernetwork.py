"""A1111 hypernetworks: files in A1111's layout (built here module by module as A1111 saves
them) load strictly, transform what each attention layer reads keys and values from, and leave
nothing behind after the job."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from modules.engine.conditioning import PromptEncoder, build_batch_conditioning
from modules.engine.hypernetwork import HypernetworkError, HypernetworkPatch, read_hypernetwork
from modules.engine.noise import ImageRNG
from modules.engine.sampling import sample
from modules.engine.sd_model import load_model
from modules.engine.tokenizer import ClipTokenizer
from modules.engine.unet import CrossAttention
from tests.engine.tiny_checkpoints import write_tiny_checkpoint


def a1111_side(width: int, generator: torch.Generator) -> nn.Sequential:
    """[1, 2, 1], relu, layer norm, no dropout: Linear, ReLU, LayerNorm, Linear, LayerNorm."""
    side = nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(), nn.LayerNorm(2 * width),
                         nn.Linear(2 * width, width), nn.LayerNorm(width))
    with torch.no_grad():
        for parameter in side.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return side


def write_hypernetwork(path, widths=(32, 64), seed=0) -> dict[int, tuple[nn.Module, nn.Module]]:
    generator = torch.Generator().manual_seed(seed)
    sides = {width: (a1111_side(width, generator), a1111_side(width, generator))
             for width in widths}
    data = {width: tuple({f"linear.{key}": value for key, value in side.state_dict().items()}
                         for side in pair) for width, pair in sides.items()}
    data.update({"layer_structure": [1, 2, 1], "activation_func": "relu", "is_layer_norm": True,
                 "activate_output": False, "use_dropout": False, "name": "tinyhn", "step": 10,
                 "sd_checkpoint": "0123abcd", "sd_checkpoint_name": "tiny"})
    torch.save(data, path)
    return sides


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hypernet")
    model = load_model(write_tiny_checkpoint(folder / "tiny.safetensors", "sd1", seed=2))
    conditioning = build_batch_conditioning(PromptEncoder(model, ClipTokenizer()),
                                            ["a blue square"], [""], 3, width=64, height=64)
    return folder, model, conditioning


def latent(model, conditioning):
    return sample(model, conditioning, ImageRNG((4, 8, 8), [5]), sampler_name="Euler",
                  scheduler="Automatic", steps=3, cfg_scale=7.0).latent


def test_each_attention_reads_keys_and_values_through_the_pair(sd1):
    folder, model, _ = sd1
    sides = write_hypernetwork(folder / "tinyhn.pt")
    network = read_hypernetwork(folder / "tinyhn.pt")
    assert (network.name, network.step, sorted(network.layers)) == ("tinyhn", 10, [32, 64])
    attention = next(m for m in model.unet.modules() if isinstance(m, CrossAttention))
    x = torch.randn(1, 16, 32)
    context = torch.randn(1, 77, 32)
    mlp_k, mlp_v = sides[32]
    with torch.no_grad():
        k_source, v_source = context + mlp_k(context) * 0.6, context + mlp_v(context) * 0.6
        q, k, v = attention.to_q(x), attention.to_k(k_source), attention.to_v(v_source)
        heads, dim = attention.heads, q.shape[-1] // attention.heads
        split = [t.view(1, -1, heads, dim).transpose(1, 2) for t in (q, k, v)]
        weights = torch.softmax(split[0] @ split[1].transpose(-1, -2) / dim ** 0.5, dim=-1)
        expected = attention.to_out[0]((weights @ split[2]).transpose(1, 2).reshape(1, 16, -1))
        with HypernetworkPatch(model.unet, [(network, 0.6)]):
            got = attention(x, context)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert attention.context_hooks == []


def test_multiplier_zero_is_the_plain_model_and_nothing_stays(sd1):
    folder, model, conditioning = sd1
    write_hypernetwork(folder / "tinyhn.pt")
    network = read_hypernetwork(folder / "tinyhn.pt")
    plain = latent(model, conditioning)
    with HypernetworkPatch(model.unet, [(network, 0.0)]):
        assert torch.equal(latent(model, conditioning), plain)
    with HypernetworkPatch(model.unet, [(network, 1.0)]):
        steered = latent(model, conditioning)
    assert not torch.equal(steered, plain)
    assert torch.equal(latent(model, conditioning), plain)


@pytest.mark.parametrize("change, message", [
    ({"is_layer_norm": False}, "do not fit the file's own structure"),
    ({"layer_structure": [2, 1]}, "must start and end with 1"),
    ({"activation_func": "wobble"}, "unknown activation"),
])
def test_a_file_that_contradicts_its_own_fields_is_refused(tmp_path, change, message):
    write_hypernetwork(tmp_path / "bad.pt")
    data = torch.load(tmp_path / "bad.pt", weights_only=True)
    data.update(change)
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(HypernetworkError, match=message):
        read_hypernetwork(tmp_path / "bad.pt")
