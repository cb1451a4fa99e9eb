"""Alt-Diffusion (issue 19): a tiny checkpoint with A1111's XLM-R text tower keys is detected,
loads strictly with the user's tokenizer, encodes as A1111's BertSeriesModelWithTransformation
does, and keeps the prompt syntax (attention, chunks, BREAK)."""
from __future__ import annotations

import pytest
import sentencepiece
import torch
from safetensors.torch import load_file, save_file
from transformers import XLMRobertaModel

from modules.engine.checkpoint_io import CheckpointLoadError
from modules.engine.conditioning import PromptEncoder
from modules.engine.detection import detect_model_config
from modules.engine.sd_model import load_model
from modules.engine.xlm_roberta import TokenizerFilesError, XLMRobertaTextEncoder, \
    XLMRobertaTokenizer
from tests.alt_diffusion_files import write_alt_diffusion


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    return write_alt_diffusion(models), models / "xlm-roberta-large"


@pytest.fixture(scope="module")
def model(files):
    checkpoint, tokenizer_dir = files
    return load_model(checkpoint, tokenizer_dir=tokenizer_dir)


def test_the_keys_are_detected_as_alt_diffusion(files):
    config = detect_model_config(load_file(str(files[0])))
    assert config.family == "sd1"
    encoder = config.text_encoders[0][1]
    assert encoder.kind == "xlm_roberta" and encoder.projection_dim == 32
    assert (encoder.width, encoder.layers, encoder.vocab_size) == (48, 2, 122)
    assert encoder.pooler and not encoder.pre_transformation


def test_it_loads_strictly_with_a1111s_key_names(files, model, tmp_path):
    names = set(model.state_dict())
    for key in ("cond_stage_model.roberta.encoder.layer.1.attention.self.query.weight",
                "cond_stage_model.roberta.pooler.dense.weight",
                "cond_stage_model.transformation.weight", "cond_stage_model.pre_LN.bias"):
        assert key in names
    state = load_file(str(files[0]))
    state["cond_stage_model.roberta.encoder.layer.0.bogus.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "extra.safetensors"))
    with pytest.raises(CheckpointLoadError, match="unexpected keys.*bogus"):
        load_model(tmp_path / "extra.safetensors", tokenizer_dir=files[1])
    del state["cond_stage_model.roberta.encoder.layer.0.bogus.weight"]
    del state["cond_stage_model.transformation.bias"]
    save_file(state, str(tmp_path / "short.safetensors"))
    with pytest.raises(CheckpointLoadError, match="missing keys.*transformation.bias"):
        load_model(tmp_path / "short.safetensors", tokenizer_dir=files[1])


def test_the_tower_is_a1111s_projection_of_the_last_hidden_state(model):
    encoder = model.cond_stage_model
    tokens = torch.tensor([[0, 10, 20, 30, 2, 1, 1, 1]])
    reference = XLMRobertaModel(encoder.roberta.config, add_pooling_layer=True).eval()
    reference.load_state_dict(encoder.roberta.state_dict())
    with torch.no_grad():
        hidden = reference(input_ids=tokens, attention_mask=(tokens != 1).long())
        expected = encoder.transformation(hidden.last_hidden_state)
        got = encoder.encode(tokens).hidden
        replaced = encoder.encode(tokens, token_embeddings=encoder.token_embeddings(tokens)).hidden
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(replaced, got, atol=1e-6)      # inputs given as vectors: same positions


def test_m18_conditions_on_the_penultimate_layer_through_transformation_pre(model):
    import dataclasses
    config = dataclasses.replace(model.config.text_encoders[0][1], pre_transformation=True)
    torch.manual_seed(0)
    encoder = XLMRobertaTextEncoder(config).eval()
    tokens = torch.tensor([[0, 10, 20, 2, 1]])
    with torch.no_grad():
        output = encoder.roberta(input_ids=tokens, attention_mask=(tokens != 1).long(),
                                 output_hidden_states=True)
        expected = encoder.transformation_pre(encoder.pre_LN(output.hidden_states[-2]))
        assert torch.allclose(encoder.encode(tokens).hidden, expected, atol=1e-5)


def test_the_tokenizer_has_xlm_r_ids(files):
    tokenizer = XLMRobertaTokenizer.from_folder(files[1])
    pieces = sentencepiece.SentencePieceProcessor(
        model_file=str(files[1] / "sentencepiece.bpe.model"))
    text = "a photo of a cat, sitting"
    assert tokenizer.encode(text) == [i + 1 for i in pieces.encode(text)]
    assert (tokenizer.bos_id, tokenizer.pad_id, tokenizer.eos_id) == (0, 1, 2)
    assert tokenizer.comma_id == pieces.piece_to_id(",") + 1
    assert 3 in tokenizer.encode("Zebra")                 # an unknown piece is <unk>, id 3
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.encode("Katze") != tokenizer.encode("katze")     # cased, unlike CLIP


def test_a_missing_or_foreign_tokenizer_is_a_clear_load_error(files, tmp_path):
    with pytest.raises(CheckpointLoadError, match="sentencepiece.bpe.model"):
        load_model(files[0], tokenizer_dir=tmp_path)
    with pytest.raises(TokenizerFilesError, match=str(tmp_path)):
        XLMRobertaTokenizer.from_folder(tmp_path)
    from tests.alt_diffusion_files import write_tiny_xlmr_tokenizer
    import tests.alt_diffusion_files as alt_files
    original = alt_files.PIECES
    alt_files.PIECES = 100
    try:
        write_tiny_xlmr_tokenizer(tmp_path / "small")
    finally:
        alt_files.PIECES = original
    with pytest.raises(CheckpointLoadError, match="102 ids but the text encoder 122"):
        load_model(files[0], tokenizer_dir=tmp_path / "small")


def test_prompt_syntax_works_as_with_clip(model):
    encoder = PromptEncoder(model, model.tokenizer)
    plain = encoder.encode("a photo of a cat, sitting").crossattn
    assert plain.shape == (77, 32)
    assert torch.equal(plain, PromptEncoder(model, model.tokenizer)
                       .encode("a photo of a cat, sitting").crossattn)
    weighted = encoder.encode("a photo of a (cat:1.5), sitting").crossattn
    assert (weighted - plain).abs().max() > 1e-3
    assert not torch.equal(encoder.encode("a photo of a [cat], sitting").crossattn, plain)
    assert encoder.encode("a cat BREAK a chair").crossattn.shape == (154, 32)
    long_prompt = ", ".join(["a photo of a cat"] * 20)
    chunks, token_count = encoder.tokenize(long_prompt)
    assert token_count > 75 and len(chunks) >= 2
    assert encoder.encode(long_prompt).crossattn.shape == (77 * len(chunks), 32)
    chunk = encoder.tokenize("a cat")[0][0]
    assert chunk.tokens[0] == 0 and chunk.tokens[-1] == 2
