"""The extra-networks cards: what each page lists, the tag a click adds (preferred weight,
activation text, alias or file name), previews, search and sort, and the metadata written
beside the file as A1111 writes it."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file

from modules.app.checkpoints import CheckpointRegistry
from modules.app.network_cards import NetworkCards, find_preview, read_user_metadata, \
    toggle_in_prompt, write_user_metadata
from modules.processing.extra_networks import HypernetworkLibrary, LoraLibrary
from modules.processing.textual_inversion import EmbeddingLibrary


class Options(dict):
    def get(self, key, default=None):
        return super().get(key, default)


def make_cards(tmp_path: Path, **options) -> NetworkCards:
    lora_dir, embedding_dir = tmp_path / "Lora", tmp_path / "embeddings"
    hypernet_dir, ckpt_dir = tmp_path / "hypernetworks", tmp_path / "Stable-diffusion"
    for folder in (lora_dir / "styles", embedding_dir, hypernet_dir, ckpt_dir):
        folder.mkdir(parents=True, exist_ok=True)
    weights = {"lora_unet_x.lora_down.weight": torch.zeros(1, 4)}
    save_file(weights, str(lora_dir / "styles" / "ink_v2.safetensors"),
              metadata={"ss_output_name": "inkwash"})
    save_file(weights, str(lora_dir / "armor.safetensors"))
    os.utime(lora_dir / "armor.safetensors", (1, 1))          # the oldest
    save_file({"emb_params": torch.zeros(2, 8)}, str(embedding_dir / "bad-hands.safetensors"))
    torch.save({}, hypernet_dir / "anime.pt")
    (ckpt_dir / "base.safetensors").write_bytes(b"x")
    Image.new("RGB", (4, 4), "red").save(lora_dir / "armor.preview.png")
    checkpoints = CheckpointRegistry(ckpt_dir, no_hashing=True)
    checkpoints.refresh()
    return NetworkCards(loras=LoraLibrary([lora_dir]), embeddings=EmbeddingLibrary([embedding_dir]),
                        checkpoints=checkpoints,
                        hypernetworks=HypernetworkLibrary([hypernet_dir]),
                        options=Options(extra_networks_default_multiplier=0.8, **options))


def test_each_page_lists_its_files_with_the_tag_a_click_adds(tmp_path):
    cards = make_cards(tmp_path)
    lora = {card.name: card for card in cards.cards("Lora")}
    assert lora["ink_v2"].tag == "<lora:inkwash:0.8>"       # the alias, the default multiplier
    assert lora["armor"].preview == tmp_path / "Lora" / "armor.preview.png"
    assert lora["ink_v2"].preview is None
    assert [c.tag for c in cards.cards("Textual Inversion")] == ["bad-hands"]
    assert [c.tag for c in cards.cards("Hypernetworks")] == ["<hypernet:anime:0.8>"]
    checkpoint, = cards.cards("Checkpoints")
    assert (checkpoint.tag, checkpoint.title.startswith("base")) == ("", True)
    by_file = make_cards(tmp_path, lora_preferred_name="Filename")
    assert {c.tag for c in by_file.cards("Lora")} == {"<lora:ink_v2:0.8>", "<lora:armor:0.8>"}


def test_metadata_beside_the_file_changes_the_card(tmp_path):
    cards = make_cards(tmp_path)
    path = tmp_path / "Lora" / "armor.safetensors"
    (tmp_path / "Lora" / "armor.json").write_text(json.dumps({"sd version": "SD1"}))
    written = write_user_metadata(path, {"activation text": "plate armor, shining",
                                         "preferred weight": 0.65, "description": "Full plate",
                                         "notes": ""})
    assert written == {"sd version": "SD1", "activation text": "plate armor, shining",
                       "preferred weight": 0.65, "description": "Full plate"}
    assert read_user_metadata(path) == written
    card = next(c for c in cards.cards("Lora") if c.name == "armor")
    assert card.prompt_text(", ") == "<lora:armor:0.65>, plate armor, shining"
    assert card.description == "Full plate"
    assert [c.name for c in cards.listing("Lora", "shining")] == ["armor"]
    assert [c.name for c in cards.listing("Lora", "styles")] == ["ink_v2"]      # the folder
    assert [c.name for c in cards.listing("Lora", "nothing like it")] == []


def test_sorting_and_the_prompt_toggle(tmp_path):
    cards = make_cards(tmp_path)
    assert [c.name for c in cards.listing("Lora", sort="Name")] == ["armor", "ink_v2"]
    assert [c.name for c in cards.listing("Lora", sort="Date modified", descending=True)] == \
        ["ink_v2", "armor"]
    prompt = toggle_in_prompt("a knight", "<lora:armor:0.8>")
    assert prompt == "a knight <lora:armor:0.8>"
    assert toggle_in_prompt(prompt, "<lora:armor:0.8>") == "a knight"
    assert toggle_in_prompt("", "bad-hands") == "bad-hands"


def test_an_embedding_image_is_its_own_preview(tmp_path):
    image = tmp_path / "style.png"
    Image.new("RGB", (4, 4)).save(image)
    assert find_preview(image) == image
    assert find_preview(tmp_path / "missing.safetensors") is None
