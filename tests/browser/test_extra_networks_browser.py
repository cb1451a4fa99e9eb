"""The extra-networks cards in the browser: a LoRA put in models/Lora shows up on Refresh, the
search narrows the cards, a click puts the tag in the prompt (and a second click takes it out),
the card's metadata is saved beside the file and changes what a click adds, and Generate writes
`Lora hashes` into the infotext."""
from __future__ import annotations

import json

from playwright.sync_api import expect
from safetensors.torch import save_file

from modules.engine.checkpoint_io import addnet_hash_safetensors, read_state_dict
from tests.browser.conftest import CHECKPOINT_NAME, generate_and_wait, set_number
from tests.engine.test_lora import kohya_names_sd1, random_lora


def test_a_lora_card_puts_its_tag_in_the_prompt_and_the_job_uses_it(page, app_server):
    lora_dir = app_server.data_dir / "models" / "Lora"
    lora_dir.mkdir(parents=True, exist_ok=True)
    state = read_state_dict(app_server.data_dir / "models" / "Stable-diffusion" / CHECKPOINT_NAME)
    lora = random_lora(kohya_names_sd1(state), state, seed=3)
    save_file(lora, str(lora_dir / "paper_cut.safetensors"),
              metadata={"ss_output_name": "papercut"})
    save_file(lora, str(lora_dir / "zebra_stripes.safetensors"))

    page.locator("#txt2img_extra_networks").get_by_text("Extra networks").first.click()
    page.locator("#txt2img_lora_cards_tab-button").click()
    page.locator("#txt2img_extra_refresh").click()
    cards = page.locator("#txt2img_lora_cards .thumbnail-item")
    expect(cards).to_have_count(2)
    page.locator("#txt2img_extra_search textarea").fill("paper")
    expect(cards).to_have_count(1)

    # the editor is open (and its fields mounted) before a click fills it
    page.locator("#txt2img_extra_editor").get_by_text("Card metadata").first.click()
    expect(page.locator("#txt2img_extra_activation_text textarea")).to_be_visible()
    prompt = page.locator("#txt2img_prompt textarea")
    prompt.fill("a fox in the forest")
    cards.first.click()
    expect(prompt).to_have_value("a fox in the forest <lora:papercut:1>")
    cards.first.click()                                 # a second click takes it out again
    expect(prompt).to_have_value("a fox in the forest")
    cards.first.click()
    expect(prompt).to_have_value("a fox in the forest <lora:papercut:1>")

    expect(page.locator("#txt2img_extra_card_name textarea")).to_have_value("Lora: paper_cut")
    activation = page.locator("#txt2img_extra_activation_text textarea")
    activation.fill("paper art")
    page.locator("#txt2img_extra_preferred_weight input").fill("0.7")
    expect(activation).to_have_value("paper art")
    page.locator("#txt2img_extra_save").click()
    expect(page.locator("#txt2img_extra_message")).to_contain_text("Saved paper_cut.json")
    saved = json.loads((lora_dir / "paper_cut.json").read_text())
    assert saved == {"activation text": "paper art", "preferred weight": 0.7}
    prompt.fill("a fox in the forest")
    cards.first.click()
    expect(prompt).to_have_value("a fox in the forest <lora:papercut:0.7> paper art")

    set_number(page, "txt2img_width", 64)
    set_number(page, "txt2img_height", 64)
    set_number(page, "txt2img_steps", 3)
    info = generate_and_wait(page, "txt2img", expected_in_info="Lora hashes")
    digest = addnet_hash_safetensors(lora_dir / "paper_cut.safetensors")[:12]
    assert f"papercut: {digest}" in info
