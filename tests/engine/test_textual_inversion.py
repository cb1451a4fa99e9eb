"""Textual-inversion embeddings: every file format users have, and the prompt tokens they take.
An embedding whose vectors are the token embeddings of some words must encode exactly as those
words do (SD1.x, and SDXL with its clip_l / clip_g pair)."""
from __future__ import annotations

import piexif
import piexif.helper
import pytest
import torch
from PIL import Image, PngImagePlugin
from safetensors.torch import save_file

from modules.engine.conditioning import CHUNK_LENGTH, PromptEncoder, tokenize_prompt
from modules.engine.sd_model import load_model
from modules.engine.textual_inversion import EmbeddingError, EmbeddingVocabulary, \
    embedding_to_b64, read_embedding
from modules.engine.tokenizer import ClipTokenizer
from tests.engine.tiny_checkpoints import write_tiny_checkpoint

TOKENIZER = ClipTokenizer()


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ti-sd1")
    return load_model(write_tiny_checkpoint(folder / "tiny.safetensors", "sd1", seed=3))


def word_vectors(encoder, words: str) -> torch.Tensor:
    ids = torch.tensor([TOKENIZER.encode(words)])
    with torch.no_grad():
        return encoder.token_embeddings(ids)[0].clone()


def test_every_file_format_reads_as_the_same_vectors(tmp_path):
    vectors = torch.randn(3, 32)
    sdxl = {"clip_l": torch.randn(2, 32), "clip_g": torch.randn(2, 64)}
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vectors},
                "name": "inner", "step": 500, "sd_checkpoint": "abcd1234",
                "sd_checkpoint_name": "base"}, tmp_path / "a1111.pt")
    torch.save({"<concept>": vectors[0]}, tmp_path / "learned_embeds.bin")
    save_file({"emb_params": vectors.half()}, str(tmp_path / "kohya.safetensors"))
    save_file({"whatever": vectors}, str(tmp_path / "single.safetensors"))
    save_file(sdxl, str(tmp_path / "sdxl.safetensors"))
    data = {"string_to_param": {"*": vectors}, "name": "picture-name", "step": 42}
    info = PngImagePlugin.PngInfo()
    info.add_text("sd-ti-embedding", embedding_to_b64(data))
    Image.new("RGB", (8, 8)).save(tmp_path / "card.png", pnginfo=info)
    exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(
        embedding_to_b64(data), encoding="unicode")}})
    Image.new("RGB", (8, 8)).save(tmp_path / "card.webp", exif=exif)

    a1111 = read_embedding(tmp_path / "a1111.pt")
    assert (a1111.name, a1111.step, a1111.sd_checkpoint, a1111.count, a1111.shape) == \
        ("a1111", 500, "abcd1234", 3, 32)
    assert torch.equal(a1111.vectors["vec"], vectors)
    diffusers = read_embedding(tmp_path / "learned_embeds.bin")
    assert diffusers.count == 1 and torch.equal(diffusers.vectors["vec"][0], vectors[0])
    half = read_embedding(tmp_path / "kohya.safetensors")
    assert half.vectors["vec"].dtype == torch.float32
    assert torch.equal(half.vectors["vec"], vectors.half().float())
    assert torch.equal(read_embedding(tmp_path / "single.safetensors").vectors["vec"], vectors)
    pair = read_embedding(tmp_path / "sdxl.safetensors")
    assert (pair.count, pair.shape) == (2, 96) and pair.fits([("clip_l", 32), ("open_clip", 64)])
    assert not pair.fits([("clip_l", 32), ("open_clip", 32)])     # bigG of another width
    for image in ("card.png", "card.webp"):
        read = read_embedding(tmp_path / image)
        assert (read.name, read.step) == ("picture-name", 42)
        torch.testing.assert_close(read.vectors["vec"], vectors)


@pytest.mark.parametrize("content, message", [
    (b"not a pickle at all", "unreadable"),
    ({"string_to_param": {"*": torch.zeros(1, 4), "#": torch.zeros(1, 4)}}, "exactly one"),
    ({"clip_l": torch.zeros(2, 4)}, "both clip_l and clip_g"),
    ({"a": torch.zeros(1, 4), "b": torch.zeros(1, 4)}, "no embedding tensor"),
    ({"emb_params": torch.zeros(80, 4)}, "more than one prompt chunk"),
])
def test_files_that_are_no_embedding_say_why(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(EmbeddingError, match=message):
        read_embedding(path)
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(EmbeddingError, match="sd-ti-embedding"):
        read_embedding(tmp_path / "plain.png")


def test_an_embedding_of_word_vectors_encodes_as_the_words(sd1):
    from modules.engine.textual_inversion import embedding_from_data
    clip = sd1.text_encoders[0][0]
    words = "red glowing sword"
    embedding = embedding_from_data("swordemb", {"emb_params": word_vectors(clip, words)})
    vocabulary = EmbeddingVocabulary.build([embedding], TOKENIZER.encode)
    with_embedding = PromptEncoder(sd1, TOKENIZER, embeddings=vocabulary)
    plain = PromptEncoder(sd1, TOKENIZER)
    expected = plain.encode(f"a knight with a {words}, (castle:1.2)").crossattn
    got = with_embedding.encode("a knight with a swordemb, (castle:1.2)").crossattn
    assert torch.equal(got, expected)
    assert list(with_embedding.used_embeddings) == ["swordemb"]
    # weighted like words; without the vocabulary the name is just text
    assert torch.equal(with_embedding.encode("a (swordemb:1.3)").crossattn,
                       plain.encode(f"a ({words}:1.3)").crossattn)
    assert not torch.equal(plain.encode("a knight with a swordemb, (castle:1.2)").crossattn,
                           expected)


def test_an_embedding_never_straddles_two_chunks():
    from modules.engine.textual_inversion import embedding_from_data
    embedding = embedding_from_data("wideemb", {"emb_params": torch.zeros(4, 8)})
    vocabulary = EmbeddingVocabulary.build([embedding], TOKENIZER.encode)
    filler = " ".join(["cat"] * (CHUNK_LENGTH - 2))
    chunks, count = tokenize_prompt(f"{filler} wideemb", TOKENIZER, comma_padding_backtrack=0,
                                    embeddings=vocabulary)
    assert len(chunks) == 2 and chunks[0].fixes == () and count == CHUNK_LENGTH + 4
    assert chunks[1].fixes == ((0, embedding),) and chunks[1].tokens[1:5] == (0, 0, 0, 0)


def test_sdxl_embeddings_carry_a_pair_and_one_width_is_not_enough(tmp_path):
    from modules.engine.textual_inversion import embedding_from_data
    model = load_model(write_tiny_checkpoint(tmp_path / "xl.safetensors", "sdxl", seed=4))
    (clip_l, l_config), (big_g, g_config) = model.text_encoders
    words = "blue hat"
    pair = embedding_from_data("hatemb", {"clip_l": word_vectors(clip_l, words),
                                          "clip_g": word_vectors(big_g, words)})
    only_l = embedding_from_data("lonely", {"emb_params": word_vectors(clip_l, words)})
    encoders = [(l_config.kind, l_config.width), (g_config.kind, g_config.width)]
    assert pair.fits(encoders) and not only_l.fits(encoders)
    vocabulary = EmbeddingVocabulary.build([pair], TOKENIZER.encode)
    got = PromptEncoder(model, TOKENIZER, embeddings=vocabulary).encode(
        "a hatemb", width=64, height=64)
    expected = PromptEncoder(model, TOKENIZER).encode(f"a {words}", width=64, height=64)
    assert torch.equal(got.crossattn, expected.crossattn)
    assert torch.equal(got.vector, expected.vector)          # the pooled bigG output too


def test_a_saved_parameter_dict_needs_the_unsafe_loader(tmp_path):
    params = torch.nn.ParameterDict({"*": torch.nn.Parameter(torch.randn(2, 8))})
    torch.save({"string_to_param": params, "name": "old"}, tmp_path / "old.pt")
    with pytest.raises(EmbeddingError, match="safe loader"):
        read_embedding(tmp_path / "old.pt")
    assert read_embedding(tmp_path / "old.pt", allow_unsafe_pickle=True).count == 2


def a1111_pixel_copy(picture: Image.Image, data: dict) -> Image.Image:
    """A1111's preview image layout, written here from its description: zlib'd JSON, low and
    high nibbles in strips left and right of the picture (one black column between), each
    XOR'd with the LCG stream; the upper bits carry decoration (here a constant)."""
    import base64
    import json
    import zlib

    import numpy as np
    payload = json.loads(base64.b64decode(embedding_to_b64(data)))
    raw = np.frombuffer(zlib.compress(json.dumps(payload).encode(), 9), np.uint8)
    height = picture.height
    size = raw.size + (height - raw.size % height)
    size += height * 3 - size % (height * 3)
    seed, mask = 0, []
    for _ in range(size):
        seed = (1664525 * seed + 1013904223) % 2 ** 32
        mask.append((seed % 255) & 0x0F)
    strips = [((np.resize(part, size) ^ np.array(mask, np.uint8)) | 0x30).reshape(height, -1, 3)
              for part in (raw & 0x0F, raw >> 4)]
    width = strips[0].shape[1]
    canvas = Image.new("RGB", (picture.width + 2 * width + 2, height), (0, 0, 0))
    canvas.paste(Image.fromarray(strips[0].astype(np.uint8)), (0, 0))
    canvas.paste(picture, (width + 1, 0))
    canvas.paste(Image.fromarray(strips[1].astype(np.uint8)), (width + 1 + picture.width + 1, 0))
    return canvas


def test_an_embedding_image_without_its_text_is_read_from_its_pixels(tmp_path):
    vectors = torch.randn(2, 16)
    data = {"string_to_param": {"*": vectors}, "name": "pixel-kept", "step": 7}
    a1111_pixel_copy(Image.new("RGB", (40, 48), (200, 120, 90)), data).save(tmp_path / "x.png")
    read = read_embedding(tmp_path / "x.png")
    assert (read.name, read.step, read.count) == ("pixel-kept", 7, 2)
    torch.testing.assert_close(read.vectors["vec"], vectors)
