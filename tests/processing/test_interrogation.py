"""Interrogation (issue 15): tiny random-weight BLIP (transformers' format), CLIP (OpenAI's
layout, rebuilt by open_clip) and DeepDanbooru (A1111's n_Conv_ layout with its tag list) put in
models/BLIP, models/interrogate and models/torch_deepdanbooru give a caption / tags through
/sdapi/v1/interrogate; absent weights are a 404 naming the folder and the file."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import save_file

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.engine.deepdanbooru import build_deepdanbooru
from modules.processing.interrogation import format_tags
from tests.processing.test_model_upscalers import encode

ROOT = Path(__file__).resolve().parents[2]
WORDS = ["a", "picture", "of", "cat", "dog", "red", "blue", "house", "tree", "sky", "sitting",
         "on", "the", "grass", "with", "green", "small", "big", "car", "road"]
TAGS = ["1girl", "solo", "long_hair", "smile (happy)", "rating:safe", "outdoors", "sky"]


def write_tiny_blip(folder: Path) -> None:
    """A BLIP captioner in transformers' save format, with a BERT tokenizer of a small vocab."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, \
        BlipImageProcessor, BlipProcessor
    folder.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")
    processor = BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer)
    config = BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=32, patch_size=16),
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, encoder_hidden_size=32,
                         max_position_embeddings=128, bos_token_id=5, sep_token_id=3,
                         pad_token_id=0, eos_token_id=3))
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).save_pretrained(str(folder))
    processor.save_pretrained(str(folder))


def write_tiny_clip(path: Path) -> None:
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    torch.manual_seed(1)
    model = CLIP(embed_dim=16, vision_cfg=CLIPVisionCfg(layers=1, width=64, patch_size=8,
                                                        image_size=32),
                 text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1,
                                      layers=1))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def tiny_deepdanbooru_state(tags: list[str]) -> dict:
    """DeepDanbooru's layout in small: stem, a block with its projection stored first, an
    identity block, a downsampling block with its projection stored after it, the tag layer."""
    torch.manual_seed(2)
    shapes = [(8, 3, 7, 7), (16, 8, 1, 1), (4, 8, 1, 1), (4, 4, 3, 3), (16, 4, 1, 1),
              (4, 16, 1, 1), (4, 4, 3, 3), (16, 4, 1, 1),
              (8, 16, 1, 1), (8, 8, 3, 3), (32, 8, 1, 1), (32, 16, 1, 1),
              (len(tags), 32, 1, 1)]
    state: dict = {}
    for index, shape in enumerate(shapes):
        fan_in = shape[1] * shape[2] * shape[3]
        gain = 0.02 if index == len(shapes) - 1 else 1.0     # tag scores not all saturated
        state[f"n_Conv_{index}.weight"] = torch.randn(shape) * gain * (2 / fan_in) ** 0.5
        if index != len(shapes) - 1:
            state[f"n_Conv_{index}.bias"] = torch.randn(shape[0]) * 0.1
    state["tags"] = tags
    return state


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("interrogate")
    models = data / "models"
    write_tiny_blip(models / "BLIP" / "blip-tiny")
    (models / "interrogate").mkdir(parents=True)
    write_tiny_clip(models / "interrogate" / "ViT-tiny.safetensors")
    (models / "interrogate" / "mediums.txt").write_text("a photograph\nan oil painting\n")
    (models / "interrogate" / "flavors.top2.txt").write_text("bright\ndark\nsoft\n")
    (models / "torch_deepdanbooru").mkdir(parents=True)
    torch.save(tiny_deepdanbooru_state(TAGS), models / "torch_deepdanbooru" /
               "model-resnet_custom_v3.pt")
    args, _ = parse_args(["--data-dir", str(data), "--nowebui", "--skip-load-model-at-start"])
    ctx = build_app_context(args, ROOT)
    yield SimpleNamespace(client=TestClient(create_api_app(ctx)), ctx=ctx, models=models)
    ctx.close()


def astronaut() -> Image.Image:
    from skimage import data
    return Image.fromarray(data.astronaut())


def interrogate(api, model: str, image: Image.Image | None = None):
    return api.client.post("/sdapi/v1/interrogate", json={
        "image": encode(image or astronaut()), "model": model})


def test_clip_interrogator_captions_and_ranks_the_category_lists(api):
    response = interrogate(api, "clip")
    assert response.status_code == 200, response.text
    caption = response.json()["caption"]
    parts = caption.split(", ")
    # BLIP's words, then one medium and the two best flavors of the user's lists
    assert parts[0] and set(parts[0].split()) <= set(WORDS)
    assert len(parts[0].split()) >= 24 - 3     # min length counts word pieces
    assert parts[1] in ("bright", "dark", "soft") and parts[2] in ("bright", "dark", "soft")
    assert parts[3] in ("a photograph", "an oil painting") and len(parts) == 4
    assert interrogate(api, "clip").json()["caption"] == caption         # deterministic

    with api.ctx.options.override({"interrogate_return_ranks": True,
                                   "interrogate_clip_skip_categories": "flavors"}):
        ranked = interrogate(api, "clip").json()["caption"]
    assert re.fullmatch(r"\((a photograph|an oil painting):[01]\.\d{3}\)", ranked.split(", ")[-1])
    assert "bright" not in ranked and "dark" not in ranked


def test_deepdanbooru_tags_follow_the_settings(api):
    response = interrogate(api, "deepdanbooru")
    assert response.status_code == 200, response.text
    network = build_deepdanbooru(tiny_deepdanbooru_state(TAGS))
    scores = network.probabilities(astronaut().convert("RGB"))
    expected = format_tags(scores, api.ctx.options)
    assert response.json()["caption"] == expected
    assert 0 < len(expected.split(", ")) < len(TAGS) - 1      # the 0.5 threshold keeps some
    with api.ctx.options.override({"interrogate_deepbooru_score_threshold": 0.0,
                                   "deepbooru_sort_alpha": True}):
        everything = interrogate(api, "deepdanbooru").json()["caption"]
    # every tag but the rating, names with spaces and escaped brackets, sorted by name
    assert everything == "1girl, long hair, outdoors, sky, smile \\(happy\\), solo"
    with api.ctx.options.override({"interrogate_deepbooru_score_threshold": 0.0,
                                   "deepbooru_filter_tags": "solo, long hair",
                                   "deepbooru_use_spaces": False, "deepbooru_escape": False,
                                   "interrogate_return_ranks": True}):
        ranked = interrogate(api, "deepdanbooru").json()["caption"]
    assert "solo" not in ranked and "long" not in ranked
    assert f"(smile (happy):{scores['smile (happy)']:.3f})" in ranked


def test_deepdanbooru_runs_the_planned_resnet():
    """The plan found in the shapes: the projection stored after its block halves the size."""
    network = build_deepdanbooru(tiny_deepdanbooru_state(TAGS))
    assert [(b.convs, b.projection, b.stride) for b in network.blocks] == [
        ((2, 3, 4), 1, 1), ((5, 6, 7), None, 1), ((8, 9, 10), 11, 2)]
    out = network(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, len(TAGS)) and ((out > 0) & (out < 1)).all()


def test_absent_or_broken_weights_are_clear_errors(api, tmp_path):
    from modules.processing.interrogation import Interrogators
    kept = api.ctx.interrogators
    try:
        api.ctx.interrogators = Interrogators(
            blip_dir=tmp_path / "BLIP", clip_dir=tmp_path / "interrogate",
            deepbooru_dir=tmp_path / "torch_deepdanbooru", options=api.ctx.options)
        missing = interrogate(api, "clip")
        assert missing.status_code == 404
        detail = missing.json()["detail"]
        assert str(tmp_path / "BLIP") in detail and str(tmp_path / "interrogate") in detail
        missing = interrogate(api, "deepdanbooru")
        assert missing.status_code == 404
        assert "model-resnet_custom_v3.pt" in missing.json()["detail"]
        assert str(tmp_path / "torch_deepdanbooru") in missing.json()["detail"]

        (tmp_path / "torch_deepdanbooru").mkdir()
        (tmp_path / "torch_deepdanbooru" / "model-resnet_custom_v3.pt").write_bytes(b"torn")
        broken = interrogate(api, "deepdanbooru")
        assert broken.status_code == 400
        assert "model-resnet_custom_v3.pt cannot be loaded" in broken.json()["detail"]
    finally:
        api.ctx.interrogators = kept
    assert interrogate(api, "blip9").status_code == 404
    empty = api.client.post("/sdapi/v1/interrogate", json={"model": "clip"})
    assert empty.status_code == 404 and "Image not found" in empty.text


def test_the_img2img_clip_button_puts_the_api_caption_in_the_prompt(api):
    from modules.ui.interrogate_buttons import interrogate_prompt
    caption = interrogate(api, "clip").json()["caption"]
    sketch = {"background": astronaut(), "layers": [], "composite": astronaut()}
    assert interrogate_prompt(api.ctx, "clip", 1, "old", {"sketch": sketch}) == (caption, "")
    prompt, message = interrogate_prompt(api.ctx, "clip", 0, "old", {"init_img": None})
    assert prompt == "old" and "Interrogate needs an image" in message
