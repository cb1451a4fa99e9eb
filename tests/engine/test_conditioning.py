"""Text conditioning: chunking, padding, emphasis, clip skip, SDXL vectors, batch conditioning."""
from __future__ import annotations

import dataclasses

import math

import pytest
import torch
from torch import nn

from modules.engine.conditioning import (
    PromptEncoder,
    apply_emphasis,
    build_batch_conditioning,
    count_prompt_tokens,
    encoder_token_ids,
    tokenize_prompt,
)
from modules.engine.configs import ModelConfig, TextEncoderConfig
from modules.engine.tokenizer import get_clip_tokenizer

CLIP_L = TextEncoderConfig(kind="clip_l", width=768, pad_token=49407)
# as detection describes SD2's ViT-H: conditioning on the penultimate of its 24 layers
OPEN_CLIP_H = TextEncoderConfig(kind="open_clip", width=1024, layers=24, act="gelu", projection_dim=1024,
                                pad_token=0, default_layer=-2)
BIG_G = TextEncoderConfig(kind="open_clip", width=1280, act="gelu", projection_dim=1280, pad_token=0)


class FakeOutput(tuple):
    def __new__(cls, hidden, pooled):
        instance = super().__new__(cls, (hidden, pooled))
        instance.hidden, instance.pooled = hidden, pooled
        return instance


class FakeTower(nn.Module):
    """Output known in closed form: hidden[b, t, c] = (id % 97 + 1) * (c + 1) / 100 * (1 - layer / 10),
    +1 when final_norm; records every call."""

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.config = config
        self.calls: list[tuple[torch.Tensor, int, bool]] = []

    def encode(self, tokens, *, layer=-1, final_norm=True):
        self.calls.append((tokens.clone(), layer, final_norm))
        per_token = (tokens % 97 + 1).float()[..., None]
        channels = torch.arange(1, self.config.width + 1, dtype=torch.float32) / 100
        hidden = per_token * channels * (1 - layer / 10) + (1.0 if final_norm else 0.0)
        pooled_width = self.config.projection_dim or self.config.width
        pooled = tokens.float().mean(dim=1, keepdim=True).expand(-1, pooled_width) / 49408
        return FakeOutput(hidden, pooled)


class FakeModel:
    def __init__(self, family: str, towers: list[nn.Module]):
        self.config = ModelConfig(family=family, text_encoders=tuple((f"enc{i}", t.config) for i, t in enumerate(towers)))
        self.text_encoders = [(tower, tower.config) for tower in towers]
        self.device = torch.device("cpu")
        self.dtype = torch.float32


def fake_model(family: str) -> FakeModel:
    configs = {"sd1": [CLIP_L], "sd2": [OPEN_CLIP_H], "sdxl": [CLIP_L, BIG_G], "sdxl_refiner": [BIG_G]}[family]
    return FakeModel(family, [FakeTower(config) for config in configs])


@pytest.fixture(scope="module")
def tokenizer():
    return get_clip_tokenizer()


def content(chunk, eos=49407):
    """The chunk's tokens between BOS and the first EOS."""
    tokens = list(chunk.tokens[1:])
    return tokens[: tokens.index(eos)]


# ---------------------------------------------------------------- chunking
def test_80_tokens_make_two_chunks_of_77(tokenizer):
    cat = tokenizer.encode("cat")[0]
    chunks, count = tokenize_prompt("cat " * 80, tokenizer)
    assert count == 80
    assert [len(chunk.tokens) for chunk in chunks] == [77, 77]
    assert chunks[0].tokens == (49406, *[cat] * 75, 49407)
    assert chunks[1].tokens == (49406, *[cat] * 5, *[49407] * 71)
    assert PromptEncoder(fake_model("sd1"), tokenizer).count_tokens("cat " * 80) == (80, 150)
    assert PromptEncoder(fake_model("sd1"), tokenizer).count_tokens("") == (0, 75)


def test_comma_backtrack_moves_words_after_last_comma(tokenizer):
    cat, dog = tokenizer.encode("cat dog")
    prompt = "cat " * 70 + ", " + "dog " * 10      # comma at position 70 of the first chunk
    chunks, _ = tokenize_prompt(prompt, tokenizer, comma_padding_backtrack=20)
    assert content(chunks[0]) == [cat] * 70 + [267]
    assert content(chunks[1]) == [dog] * 10
    no_backtrack, _ = tokenize_prompt(prompt, tokenizer, comma_padding_backtrack=0)
    assert content(no_backtrack[0]) == [cat] * 70 + [267] + [dog] * 4
    # comma further back than the backtrack window: no move
    short_window, _ = tokenize_prompt(prompt, tokenizer, comma_padding_backtrack=4)
    assert content(short_window[0]) == [cat] * 70 + [267] + [dog] * 4


def test_break_forces_new_chunk(tokenizer):
    chunks, count = tokenize_prompt("a BREAK b", tokenizer)
    assert [content(chunk) for chunk in chunks] == [tokenizer.encode("a"), tokenizer.encode("b")]
    assert count == 76
    literal, _ = tokenize_prompt("a BREAK b", tokenizer, emphasis="None")
    assert len(literal) == 1


def test_weights_follow_runs_and_emphasis_none_keeps_brackets(tokenizer):
    chunks, _ = tokenize_prompt("a (cat:1.5) [dog]", tokenizer)
    ids = content(chunks[0])
    assert ids == tokenizer.encode("a cat dog")
    assert chunks[0].multipliers[1:4] == pytest.approx((1.0, 1.5, 1 / 1.1))
    assert chunks[0].multipliers[0] == chunks[0].multipliers[4] == 1.0
    literal, _ = tokenize_prompt("a (cat:1.5)", tokenizer, emphasis="None")
    assert content(literal[0]) == tokenizer.encode("a (cat:1.5)")
    assert set(literal[0].multipliers) == {1.0}


def test_ui_token_counter_takes_the_longest_scheduled_text(tokenizer):
    encoder = PromptEncoder(fake_model("sd1"), tokenizer)
    # "dog dog dog" (3 tokens) after step 3 is longer than "cat" (1 token); the lora tag is not counted
    assert count_prompt_tokens(encoder, "<lora:x:1>[cat:dog dog dog:3]", 10) == (3, 75)
    # AND parts are counted separately for a positive prompt, as one text for a negative one
    assert count_prompt_tokens(encoder, "a b AND c", 10) == (2, 75)
    assert count_prompt_tokens(encoder, "a b AND c", 10, is_positive=False) == (4, 75)
    assert count_prompt_tokens(encoder, "cat " * 76, 10) == (76, 150)


# ---------------------------------------------------------------- padding per encoder kind
def test_padding_ids_per_encoder_kind(tokenizer):
    chunk = tokenize_prompt("a cat", tokenizer)[0][0]
    clip_ids = encoder_token_ids(chunk, eos_id=49407, pad_token=CLIP_L.pad_token)
    open_clip_ids = encoder_token_ids(chunk, eos_id=49407, pad_token=OPEN_CLIP_H.pad_token)
    assert clip_ids == [49406, 320, 2368] + [49407] * 74
    assert open_clip_ids == [49406, 320, 2368, 49407] + [0] * 73

    model = fake_model("sdxl")
    PromptEncoder(model, tokenizer).encode("a cat", width=64, height=64)
    (clip_l, _), (big_g, _) = model.text_encoders
    assert clip_l.calls[0][0][0].tolist() == clip_ids
    assert big_g.calls[0][0][0].tolist() == open_clip_ids


# ---------------------------------------------------------------- emphasis
def test_emphasis_scales_the_weighted_token_rows(tokenizer):
    model = fake_model("sd1")
    plain = PromptEncoder(model, tokenizer, emphasis="No norm").encode("a cat dog").crossattn
    weighted = PromptEncoder(model, tokenizer, emphasis="No norm").encode("a (cat:1.5) [dog]").crossattn
    assert weighted.shape == (77, 768)
    torch.testing.assert_close(weighted[2], plain[2] * 1.5)
    torch.testing.assert_close(weighted[3], plain[3] / 1.1)
    torch.testing.assert_close(weighted[[0, 1, 4, 76]], plain[[0, 1, 4, 76]])


def test_emphasis_original_restores_the_mean(tokenizer):
    model = fake_model("sd1")
    plain = PromptEncoder(model, tokenizer).encode("a cat dog").crossattn
    original = PromptEncoder(model, tokenizer).encode("a (cat:1.5) dog").crossattn
    assert original.mean().item() == pytest.approx(plain.mean().item(), rel=1e-5)
    ratio = original[2] / original[1]
    torch.testing.assert_close(ratio, plain[2] / plain[1] * 1.5)
    assert not torch.allclose(original[1], plain[1])   # renormalisation touched every row

    ignored = PromptEncoder(model, tokenizer, emphasis="Ignore").encode("a (cat:1.5) dog").crossattn
    torch.testing.assert_close(ignored, plain)


def test_apply_emphasis_mean_is_over_the_whole_batch():
    hidden = torch.rand(2, 77, 8) + 0.5
    multipliers = torch.ones(2, 77)
    multipliers[0, 3] = 2.0
    out = apply_emphasis(hidden, multipliers, "Original")
    assert out.mean().item() == pytest.approx(hidden.mean().item(), rel=1e-5)
    assert out[1].mean().item() != pytest.approx(hidden[1].mean().item(), rel=1e-6)


# ---------------------------------------------------------------- layers / clip skip
@pytest.mark.parametrize("family, kwargs, expected", [
    ("sd1", {}, [(-1, True)]),
    ("sd1", {"clip_skip": 2}, [(-2, True)]),
    ("sd2", {"clip_skip": 2}, [(-2, True)]),
    ("sdxl", {"clip_skip": 3}, [(-2, False), (-2, False)]),
    ("sdxl", {"clip_skip": 3, "sdxl_clip_l_skip": True}, [(-3, False), (-2, False)]),
    ("sdxl_refiner", {}, [(-2, False)]),
])
def test_layer_selection_per_family(tokenizer, family, kwargs, expected):
    model = fake_model(family)
    PromptEncoder(model, tokenizer, **kwargs).encode("x", width=64, height=64)
    assert [(tower.calls[0][1], tower.calls[0][2]) for tower, _ in model.text_encoders] == expected


def test_sd2_file_with_23_stored_layers_conditions_on_its_last_layer(tokenizer):
    """diffusers-converted SD2 files drop the 24th layer; detection then sets default_layer -1."""
    truncated = dataclasses.replace(OPEN_CLIP_H, layers=23, default_layer=-1)
    model = FakeModel("sd2", [FakeTower(truncated)])
    PromptEncoder(model, tokenizer).encode("x", width=64, height=64)
    assert model.text_encoders[0][0].calls[0][1:] == (-1, True)


def test_long_prompt_chunks_are_encoded_separately_and_concatenated(tokenizer):
    model = fake_model("sd2")
    encoder = PromptEncoder(model, tokenizer)
    cond = encoder.encode("cat " * 80)
    assert cond.crossattn.shape == (154, 1024)
    assert cond.vector is None
    assert len(model.text_encoders[0][0].calls) == 2
    tail_alone = PromptEncoder(model, tokenizer).encode("cat " * 5).crossattn
    torch.testing.assert_close(cond.crossattn[77:], tail_alone)


def test_identical_texts_are_encoded_once(tokenizer):
    model = fake_model("sd1")
    encoder = PromptEncoder(model, tokenizer)
    first = encoder.encode("same text")
    second = encoder.encode("same text")
    assert len(model.text_encoders[0][0].calls) == 1
    assert first.crossattn is second.crossattn


# ---------------------------------------------------------------- real tiny CLIP: clip skip
def test_clip_skip_with_real_tiny_clip_text_encoder(tokenizer):
    text_encoders = pytest.importorskip("modules.engine.text_encoders")
    torch.manual_seed(0)
    config = TextEncoderConfig(kind="clip_l", width=32, layers=3, heads=2, intermediate=64)
    tower = text_encoders.CLIPTextEncoder(config).eval()
    model = FakeModel("sd1", [tower])
    last = PromptEncoder(model, tokenizer, clip_skip=1).encode("a photo of a cat").crossattn
    skip2 = PromptEncoder(model, tokenizer, clip_skip=2).encode("a photo of a cat").crossattn
    assert last.shape == skip2.shape == (77, 32)
    assert not torch.allclose(last, skip2)
    ids = torch.tensor([[49406, 320, 1125, 539, 320, 2368] + [49407] * 71])
    with torch.no_grad():
        output = tower.text_model(input_ids=ids, output_hidden_states=True)
        torch.testing.assert_close(skip2, tower.text_model.final_layer_norm(output.hidden_states[-2])[0])
        torch.testing.assert_close(last, output.last_hidden_state[0])


# ---------------------------------------------------------------- SDXL vector
def test_sdxl_base_crossattn_width_and_vector(tokenizer):
    encoder = PromptEncoder(fake_model("sdxl"), tokenizer)
    cond = encoder.encode("a cat", width=832, height=1216)
    assert cond.crossattn.shape == (77, 2048)
    assert cond.vector.shape == (2816,)
    sizes = cond.vector[1280:].reshape(6, 256)
    # each value v -> [cos(v * f_i), sin(v * f_i)], f_0 = 1: (orig h, orig w, crop top, crop left, target h, target w)
    for row, value in zip(sizes, [1216, 832, 0, 0, 1216, 832]):
        assert row[0].item() == pytest.approx(math.cos(value), abs=1e-4)
        assert row[128].item() == pytest.approx(math.sin(value), abs=1e-4)
        assert row[1].item() == pytest.approx(math.cos(value * math.exp(-math.log(10000) / 128)), abs=1e-3)


def test_sdxl_empty_negative_prompt_is_zeroed(tokenizer):
    encoder = PromptEncoder(fake_model("sdxl"), tokenizer)
    negative = encoder.encode("", width=1024, height=1024, is_negative=True)
    assert torch.count_nonzero(negative.crossattn) == 0
    assert torch.count_nonzero(negative.vector[:1280]) == 0
    assert torch.count_nonzero(negative.vector[1280:]) > 0
    positive_empty = encoder.encode("", width=1024, height=1024)
    assert torch.count_nonzero(positive_empty.crossattn) > 0


def test_refiner_vector_uses_aesthetic_score(tokenizer):
    encoder = PromptEncoder(fake_model("sdxl_refiner"), tokenizer)
    positive = encoder.encode("a cat", width=1024, height=1024)
    negative = encoder.encode("a cat", width=1024, height=1024, is_negative=True)
    assert positive.crossattn.shape == (77, 1280)
    assert positive.vector.shape == negative.vector.shape == (2560,)
    assert positive.vector[-256].item() == pytest.approx(math.cos(6.0), abs=1e-5)
    assert negative.vector[-256].item() == pytest.approx(math.cos(2.5), abs=1e-5)
    torch.testing.assert_close(positive.vector[:-256], negative.vector[:-256])


# ---------------------------------------------------------------- batch conditioning
def test_build_batch_conditioning_and_schedules(tokenizer):
    model = fake_model("sd1")
    encoder = PromptEncoder(model, tokenizer)
    batch = build_batch_conditioning(
        encoder, ["a [b:c:5] AND dog:0.5", "plain"], ["[x:y:3]", ""], 10, width=512, height=512)
    assert len(batch.conds) == len(batch.unconds) == 2
    first = batch.conds[0]
    assert [weight for _, weight in first.parts] == [1.0, 0.5]
    edited, dog = first.parts[0][0], first.parts[1][0]
    assert [step for step, _ in edited.entries] == [5, 10]
    reference = PromptEncoder(model, tokenizer)
    torch.testing.assert_close(edited.at(0).crossattn, reference.encode("a b").crossattn)
    torch.testing.assert_close(edited.at(5).crossattn, reference.encode("a b").crossattn)
    torch.testing.assert_close(edited.at(6).crossattn, reference.encode("a c").crossattn)
    torch.testing.assert_close(dog.at(0).crossattn, reference.encode(" dog").crossattn)
    assert [step for step, _ in batch.conds[1].parts[0][0].entries] == [10]

    negative = batch.unconds[0]
    assert [step for step, _ in negative.entries] == [3, 10]
    torch.testing.assert_close(negative.at(4).crossattn, reference.encode("y").crossattn)
    assert batch.unconds[1].at(0).crossattn.shape == (77, 768)


def test_negative_prompt_is_not_split_on_and(tokenizer):
    model = fake_model("sd1")
    batch = build_batch_conditioning(PromptEncoder(model, tokenizer), ["a"], ["b AND c"], 4, width=64, height=64)
    torch.testing.assert_close(batch.unconds[0].at(0).crossattn,
                               PromptEncoder(model, tokenizer).encode("b AND c").crossattn)


def test_hires_schedule_in_batch_conditioning(tokenizer):
    encoder = PromptEncoder(fake_model("sd1"), tokenizer)
    batch = build_batch_conditioning(encoder, ["a [b:1.5] c"], [""], 10, width=64, height=64, hires_steps=20)
    assert [step for step, _ in batch.conds[0].parts[0][0].entries] == [10, 20]


def test_sdxl_batch_conditioning_fills_vectors(tokenizer):
    encoder = PromptEncoder(fake_model("sdxl"), tokenizer)
    batch = build_batch_conditioning(encoder, ["a cat"], [""], 4, width=768, height=512)
    cond = batch.conds[0].parts[0][0].at(0)
    uncond = batch.unconds[0].at(0)
    assert cond.vector.shape == uncond.vector.shape == (2816,)
    assert cond.vector[1280].item() == pytest.approx(math.cos(512), abs=1e-4)
    assert torch.count_nonzero(uncond.crossattn) == 0


def test_sdxl_with_real_tiny_towers_uses_penultimate_layers_and_big_g_pooled(tokenizer):
    text_encoders = pytest.importorskip("modules.engine.text_encoders")
    torch.manual_seed(0)
    clip_l = text_encoders.CLIPTextEncoder(
        TextEncoderConfig(kind="clip_l", width=32, layers=3, heads=2, intermediate=64)).eval()
    big_g = text_encoders.OpenCLIPTextEncoder(TextEncoderConfig(
        kind="open_clip", width=48, layers=3, heads=2, intermediate=96, act="gelu",
        projection_dim=40, pad_token=0)).eval()
    cond = PromptEncoder(FakeModel("sdxl", [clip_l, big_g]), tokenizer).encode(
        "a photo of a cat " * 20, width=1024, height=1024)
    assert cond.crossattn.shape == (154, 32 + 48)
    assert cond.vector.shape == (40 + 6 * 256,)
    first_chunk = [49406] + tokenizer.encode("a photo of a cat " * 20)[:75] + [49407]
    with torch.no_grad():
        expected_l = clip_l.encode(torch.tensor([first_chunk]), layer=-2, final_norm=False)
        expected_g = big_g.encode(torch.tensor([first_chunk]), layer=-2, final_norm=False)
    torch.testing.assert_close(cond.crossattn[:77, :32], expected_l.hidden[0])
    torch.testing.assert_close(cond.crossattn[:77, 32:], expected_g.hidden[0])
    torch.testing.assert_close(cond.vector[:40], expected_g.pooled[0])


def test_original_emphasis_on_an_all_zero_encoder_output_stays_finite():
    """An all-zero hidden state (a zero-weight encoder) has mean 0: no 0/0 rescale, no NaN."""
    hidden = torch.zeros(2, 77, 16, dtype=torch.bfloat16)
    multipliers = torch.ones(2, 77)
    multipliers[:, 3] = 1.1
    out = apply_emphasis(hidden, multipliers, "Original")
    assert torch.equal(out, hidden)
    nonzero = torch.randn(2, 77, 16)
    scaled = apply_emphasis(nonzero, multipliers, "Original")
    torch.testing.assert_close(scaled.mean(), nonzero.mean())
