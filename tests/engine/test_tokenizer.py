"""CLIP BPE tokenizer built offline from open_clip's bundled vocabulary."""
import pytest

from modules.engine.tokenizer import ClipTokenizer, get_clip_tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> ClipTokenizer:
    return get_clip_tokenizer()


def test_special_and_comma_ids(tokenizer):
    assert (tokenizer.bos_id, tokenizer.eos_id) == (49406, 49407)
    assert tokenizer.comma_id == 267
    assert tokenizer.vocab_size == 49408


def test_known_ids_without_special_tokens(tokenizer):
    # the ids CLIP's own tokenizer gives "a photo of a cat" (between BOS and EOS)
    assert tokenizer.encode("a photo of a cat") == [320, 1125, 539, 320, 2368]
    assert tokenizer.encode("a, b") == [320, 267, 321]
    assert tokenizer.encode("") == []


def test_text_is_lowercased_and_whitespace_collapsed(tokenizer):
    assert tokenizer.encode("A   Photo\nof a CAT") == tokenizer.encode("a photo of a cat")


@pytest.mark.parametrize("text", ["a photo of a cat", "masterpiece best quality", "portrait of an astronaut"])
def test_round_trip(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_decode_drops_bos_and_eos(tokenizer):
    ids = [tokenizer.bos_id, *tokenizer.encode("red fox"), tokenizer.eos_id, tokenizer.eos_id]
    assert tokenizer.decode(ids) == "red fox"


def test_factory_builds_once():
    assert get_clip_tokenizer() is get_clip_tokenizer()
