"""CLIP text encoders: SD key layout at full size (meta device) and numbers against the libraries
they are built from (transformers CLIPTextModel, open_clip TextTransformer)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from open_clip.transformer import TextTransformer
from transformers import CLIPTextConfig, CLIPTextModel

from modules.engine.configs import TextEncoderConfig
from modules.engine.text_encoders import CLIPTextEncoder, OpenCLIPTextEncoder

REF_DIR = Path("/work/shared/ref")
CLIP_L = TextEncoderConfig(kind="clip_l", width=768, layers=12, heads=12, intermediate=3072)
VIT_H = TextEncoderConfig(kind="open_clip", width=1024, layers=24, heads=16, intermediate=4096,
                          projection_dim=1024, act="gelu", default_layer=-2, pad_token=0)
VIT_BIG_G = TextEncoderConfig(kind="open_clip", width=1280, layers=32, heads=20, intermediate=5120,
                              projection_dim=1280, act="gelu", default_layer=-2, pad_token=0)
TINY_CLIP = TextEncoderConfig(kind="clip_l", width=32, layers=3, heads=2, intermediate=64)
TINY_OPEN_CLIP = TextEncoderConfig(kind="open_clip", width=32, layers=3, heads=2, intermediate=128,
                                   projection_dim=24, act="gelu", default_layer=-2, pad_token=0)

FULL_SIZE_CASES = [
    ("sd15", "cond_stage_model.", CLIPTextEncoder, CLIP_L),
    ("sd21_v", "cond_stage_model.", OpenCLIPTextEncoder, VIT_H),
    ("sdxl_base", "conditioner.embedders.0.", CLIPTextEncoder, CLIP_L),
    ("sdxl_base", "conditioner.embedders.1.", OpenCLIPTextEncoder, VIT_BIG_G),
]


def _tokens(batch: int, eos_at: list[int], pad: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 49406, (batch, 77), generator=generator)
    tokens[:, 0] = 49406
    for row, position in enumerate(eos_at):
        tokens[row, position] = 49407
        tokens[row, position + 1:] = pad
    return tokens


def _ref_shapes(ref_name: str, prefix: str) -> dict[str, tuple[int, ...]]:
    ref = json.loads((REF_DIR / f"{ref_name}.json").read_text())
    return {key[len(prefix):]: tuple(shape) for key, shape in ref["tensors"].items()
            if key.startswith(prefix)}


@pytest.mark.parametrize("ref_name,prefix,encoder_class,config", FULL_SIZE_CASES)
def test_full_size_keys_and_shapes_match_real_files(ref_name, prefix, encoder_class, config) -> None:
    expected = _ref_shapes(ref_name, prefix)
    with torch.device("meta"):
        encoder = encoder_class(config)
    got = {key: tuple(tensor.shape) for key, tensor in encoder.state_dict().items()}
    assert sorted(set(expected) - set(got)) == []
    assert sorted(set(got) - set(expected)) == []
    assert {key: shape for key, shape in got.items() if expected[key] != shape} == {}


def _random_clip(seed: int = 0) -> CLIPTextEncoder:
    torch.manual_seed(seed)
    return CLIPTextEncoder(TINY_CLIP).eval()


@torch.no_grad()
def test_clip_matches_transformers_last_and_penultimate_layer() -> None:
    encoder = _random_clip()
    reference = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=77, hidden_act="quick_gelu")).eval()
    prefix = "transformer.text_model."
    reference.load_state_dict({key[len(prefix):]: value
                               for key, value in encoder.state_dict().items()}, strict=True)
    tokens = _tokens(2, eos_at=[6, 12], pad=49407)
    expected = reference(input_ids=tokens, output_hidden_states=True)

    last = encoder.encode(tokens, layer=-1, final_norm=True)
    torch.testing.assert_close(last.hidden, expected.last_hidden_state)
    torch.testing.assert_close(last.pooled, expected.pooler_output)
    assert last.hidden.shape == (2, 77, 32)

    penultimate = encoder.encode(tokens, layer=-2, final_norm=False)
    torch.testing.assert_close(penultimate.hidden, expected.hidden_states[-2])
    normed = encoder.encode(tokens, layer=-2, final_norm=True)
    torch.testing.assert_close(normed.hidden, reference.final_layer_norm(expected.hidden_states[-2]))
    assert not torch.allclose(penultimate.hidden, last.hidden)


def test_clip_loads_files_with_and_without_position_ids() -> None:
    source = _random_clip(seed=1)
    weights = source.state_dict()
    assert "transformer.text_model.embeddings.position_ids" not in weights
    with_ids = {**weights, "transformer.text_model.embeddings.position_ids": torch.arange(77)[None]}
    # some merges store a corrupted float copy: it must be ignored, not used
    corrupted = {**weights,
                 "transformer.text_model.embeddings.position_ids": torch.full((1, 77), 0.3)}
    tokens = _tokens(1, eos_at=[9], pad=49407)
    expected = source.encode(tokens).hidden
    for state in (weights, with_ids, corrupted):
        target = CLIPTextEncoder(TINY_CLIP).eval()
        target.load_state_dict(state, strict=True)
        torch.testing.assert_close(target.encode(tokens).hidden, expected)
    assert "transformer.text_model.embeddings.position_ids" in with_ids   # caller's dict intact


@torch.no_grad()
def test_open_clip_matches_open_clip_text_transformer() -> None:
    torch.manual_seed(2)
    encoder = OpenCLIPTextEncoder(TINY_OPEN_CLIP).eval()
    reference = TextTransformer(context_length=77, vocab_size=49408, width=32, heads=2, layers=3,
                                output_dim=24, output_tokens=True).eval()
    state = {key[len("model."):]: value for key, value in encoder.state_dict().items()
             if key != "model.logit_scale"}
    reference.load_state_dict(state, strict=True)
    tokens = _tokens(2, eos_at=[4, 20], pad=0)

    expected_pooled, expected_tokens = reference(tokens)
    last = encoder.encode(tokens, layer=-1, final_norm=True)
    torch.testing.assert_close(last.hidden, expected_tokens)
    torch.testing.assert_close(last.pooled, expected_pooled)
    assert last.pooled.shape == (2, 24)

    intermediates = reference.forward_intermediates(tokens, indices=[1], output_fmt="NLC")
    penultimate = encoder.encode(tokens, layer=-2, final_norm=False)
    torch.testing.assert_close(penultimate.hidden, intermediates["text_intermediates"][0])
    # the pooled output always comes from the last layer, whatever layer conditions
    torch.testing.assert_close(penultimate.pooled, expected_pooled)


@torch.no_grad()
@pytest.mark.parametrize("encoder_class,config", [(CLIPTextEncoder, TINY_CLIP),
                                                  (OpenCLIPTextEncoder, TINY_OPEN_CLIP)])
def test_attention_is_causal(encoder_class, config) -> None:
    torch.manual_seed(3)
    encoder = encoder_class(config).eval()
    tokens = _tokens(1, eos_at=[30], pad=config.pad_token)
    changed = tokens.clone()
    changed[0, 10] = 1234 if tokens[0, 10] != 1234 else 4321
    before = encoder.encode(tokens, layer=-1).hidden
    after = encoder.encode(changed, layer=-1).hidden
    torch.testing.assert_close(before[:, :10], after[:, :10])
    assert not torch.allclose(before[:, 10:], after[:, 10:])


def test_layer_out_of_range_is_rejected() -> None:
    encoder = _random_clip()
    with pytest.raises(ValueError, match="layer"):
        encoder.encode(_tokens(1, eos_at=[3], pad=49407), layer=-4)
    with pytest.raises(ValueError, match="layer"):
        encoder.encode(_tokens(1, eos_at=[3], pad=49407), layer=0)


def test_open_clip_without_projection_has_no_projection_key() -> None:
    config = TextEncoderConfig(kind="open_clip", width=32, layers=2, heads=1, intermediate=128,
                               projection_dim=None, act="gelu", default_layer=-1, pad_token=0)
    encoder = OpenCLIPTextEncoder(config).eval()
    assert "model.text_projection" not in encoder.state_dict()
    with torch.no_grad():
        output = encoder.encode(_tokens(1, eos_at=[5], pad=0))
    assert output.pooled.shape == (1, 32)
