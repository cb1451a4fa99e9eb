"""Infotext: A1111 order and quoting when writing, §5.4 rules when reading, §12 worked examples."""
import pytest

from modules.processing.infotext import (create_infotext, infotext_to_api_fields,
                                         ordered_generation_params, parse_generation_parameters,
                                         quote)
from modules.processing.styles import PromptStyle, StyleDatabase

EXAMPLE_12_1 = ("a photo of a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, "
                "Schedule type: Automatic, CFG scale: 7.0, Seed: 1234, Size: 512x512, "
                "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1")

EXAMPLE_12_2 = (
    "masterpiece, 1girl, <lora:detailTweaker:0.8>\nNegative prompt: lowres, (bad hands:1.2)\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3847291, "
    "Size: 512x768, Model hash: 7f96a1a9ca, Model: anything-v5, Denoising strength: 0.45, "
    "Clip skip: 2, Hires upscale: 2, Hires steps: 14, Hires upscaler: R-ESRGAN 4x+ Anime6B, "
    'Lora hashes: "detailTweaker: 2a5e2c8a2b1f", Version: v1.10.1')

EXAMPLE_12_3 = (
    "a red hat\nSteps: 30, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, Seed: 42, "
    "Size: 512x512, Model hash: 0123456789, Model: sd15-inpaint, Denoising strength: 0.75, "
    "Mask blur: 4, Inpaint area: Only masked, Masked area padding: 32, "
    "Masked content: latent noise, Version: v1.10.1")


def test_example_12_1_created_from_api_request():
    params = ordered_generation_params(
        steps=20, sampler_name="Euler a", schedule_type="Automatic", cfg_scale=7.0, seed=1234,
        width=512, height=512, model_hash="6ce0161689", model_name="v1-5-pruned-emaonly",
        subseed=3195163375, subseed_strength=0, clip_skip=1, rng="GPU", version="v1.10.1")
    assert create_infotext(prompt="a photo of a cat", negative_prompt="blurry",
                           params=params) == EXAMPLE_12_1


def test_example_12_2_created_with_extra_params_and_parsed_back():
    params = ordered_generation_params(
        steps=28, sampler_name="DPM++ 2M", schedule_type="Karras", cfg_scale=6.5, seed=3847291,
        width=512, height=768, model_hash="7f96a1a9ca", model_name="anything-v5",
        denoising_strength=0.45, clip_skip=2, version="v1.10.1",
        extra_params={"Hires upscale": 2, "Hires steps": 14,
                      "Hires upscaler": "R-ESRGAN 4x+ Anime6B",
                      "Lora hashes": "detailTweaker: 2a5e2c8a2b1f"})
    text = create_infotext(prompt="masterpiece, 1girl, <lora:detailTweaker:0.8>",
                           negative_prompt="lowres, (bad hands:1.2)", params=params)
    assert text == EXAMPLE_12_2

    parsed = parse_generation_parameters(text)
    assert parsed["Prompt"] == "masterpiece, 1girl, <lora:detailTweaker:0.8>"
    assert parsed["Negative prompt"] == "lowres, (bad hands:1.2)"
    for key, value in {"Steps": "28", "Sampler": "DPM++ 2M", "Schedule type": "Karras",
                       "CFG scale": "6.5", "Seed": "3847291", "Size-1": "512", "Size-2": "768",
                       "Model hash": "7f96a1a9ca", "Model": "anything-v5",
                       "Denoising strength": "0.45", "Clip skip": "2", "Hires upscale": "2",
                       "Hires steps": "14", "Hires upscaler": "R-ESRGAN 4x+ Anime6B",
                       "Lora hashes": "detailTweaker: 2a5e2c8a2b1f", "Version": "v1.10.1",
                       "Hires sampler": "Use same sampler", "RNG": "GPU",
                       "Emphasis": "Original"}.items():
        assert parsed[key] == value, key
    assert "Size" not in parsed
    fields = infotext_to_api_fields(parsed)
    assert fields["enable_hr"] is True
    assert fields["width"] == 512 and fields["height"] == 768
    assert fields["cfg_scale"] == 6.5 and fields["steps"] == 28 and fields["seed"] == 3847291
    assert fields["hr_scale"] == 2.0 and fields["hr_second_pass_steps"] == 14
    assert fields["sampler_name"] == "DPM++ 2M" and fields["scheduler"] == "Karras"
    assert fields["denoising_strength"] == 0.45


def test_example_12_3_inpainting_fields():
    parsed = parse_generation_parameters(EXAMPLE_12_3)
    assert parsed["Prompt"] == "a red hat" and parsed["Negative prompt"] == ""
    assert parsed["Inpaint area"] == "Only masked" and parsed["Masked content"] == "latent noise"
    assert parsed["Mask mode"] == "Inpaint masked"          # default filled in
    fields = infotext_to_api_fields(parsed)
    assert fields["inpaint_full_res"] is True and fields["inpainting_fill"] == 2
    assert fields["mask_blur"] == 4 and fields["inpaint_full_res_padding"] == 32
    assert fields["inpainting_mask_invert"] == 0 and fields["denoising_strength"] == 0.75


def test_defaults_for_a_minimal_infotext():
    parsed = parse_generation_parameters(EXAMPLE_12_1)
    assert parsed["Clip skip"] == "1" and parsed["RNG"] == "GPU"
    assert parsed["Hires resize-1"] == 0 and parsed["Masked area padding"] == 32
    assert parsed["VAE Decoder"] == "Full" and parsed["FP8 weight"] == "Disable"
    assert "Cache FP16 weight for LoRA" not in parsed and "Emphasis" not in parsed
    assert parsed["Refiner switch by sampling steps"] is False
    assert "Downcast alphas_cumprod" not in parsed      # v1.10.1 needs no back-compat switch
    assert infotext_to_api_fields(parsed)["enable_hr"] is False


@pytest.mark.parametrize("value", ['a, b', 'key: value', 'line1\nline2', 'say "hi", ok',
                                   'back\\slash, x', '猫, 犬: 鳥'])
def test_quoting_round_trips(value):
    text = create_infotext(prompt="p", negative_prompt="",
                           params={"Steps": 1, "Sampler": "Euler", "Odd value": value, "Seed": 2})
    assert "\n" not in text.split("\n", 1)[1]          # params stay on one line
    assert parse_generation_parameters(text)["Odd value"] == value


def test_quote_rules():
    assert quote("Euler a") == "Euler a"
    assert quote(7.0) == 7.0
    assert quote("a: b") == '"a: b"'
    assert quote('x, "y"') == '"x, \\"y\\""'
    assert quote("猫,犬") == '"猫,犬"'                   # ensure_ascii=False


def test_none_values_skipped_and_key_equal_value_written_bare():
    text = create_infotext(prompt="p", negative_prompt="", params={
        "Steps": 5, "Face restoration": None, "Inpaint not masked": "Inpaint not masked",
        "Seed": 1})
    assert text == "p\nSteps: 5, Inpaint not masked, Seed: 1"


def test_multiline_prompts_and_negative():
    text = ("line one\nline two\nNegative prompt: bad\nworse\n"
            "Steps: 3, Sampler: Euler, Seed: 9, Size: 64x32")
    parsed = parse_generation_parameters(text)
    assert parsed["Prompt"] == "line one\nline two"
    assert parsed["Negative prompt"] == "bad\nworse"
    assert (parsed["Size-1"], parsed["Size-2"]) == ("64", "32")


def test_last_line_with_fewer_than_three_params_is_prompt():
    parsed = parse_generation_parameters("a cat\nstyle: oil, mood: calm")
    assert parsed["Prompt"] == "a cat\nstyle: oil, mood: calm"
    assert "style" not in parsed and "Steps" not in parsed


def test_order_of_fixed_slots_and_extra_keys():
    params = ordered_generation_params(
        steps=10, sampler_name="Euler", cfg_scale=7, seed=5, width=64, height=64,
        subseed=77, subseed_strength=0.3, seed_resize_from=(32, 48), clip_skip=1, ensd=31337,
        rng="CPU", tiling=True, version="v1", extra_params={"Eta": 0.5, "Clip skip": 3})
    keys = [k for k, v in params.items() if v is not None]
    assert keys == ["Steps", "Sampler", "CFG scale", "Seed", "Size", "Variation seed",
                    "Variation seed strength", "Seed resize from", "Clip skip", "ENSD", "RNG",
                    "Tiling", "Eta", "Version"]
    assert params["Seed resize from"] == "32x48" and params["Clip skip"] == 3


def test_backcompat_and_legacy_hires():
    old = parse_generation_parameters(
        "a [b:c:5]\nSteps: 20, Sampler: DDIM, Seed: 1, Size: 1024x1024, "
        "First pass size: 0x0, Version: v1.5.1")
    assert old["Old prompt editing timelines"] is True and old["Pad conds v0"] is True
    assert old["Downcast alphas_cumprod"] is True
    assert (old["Size-1"], old["Size-2"]) == (512, 512)
    assert (old["Hires resize-1"], old["Hires resize-2"]) == (1024, 1024)
    no_compat = parse_generation_parameters(
        "a [b:c:5]\nSteps: 20, Sampler: DDIM, Seed: 1, Version: v1.5.1", auto_backcompat=False)
    assert "Old prompt editing timelines" not in no_compat


def test_skip_fields_hypernet_and_styles(tmp_path):
    parsed = parse_generation_parameters(
        "p\nSteps: 2, Seed: 3, Hypernet: anime, Hypernet strength: 0.5, Sampler: Euler",
        skip_fields=["Seed"])
    assert "Seed" not in parsed and parsed["Prompt"] == "p<hypernet:anime:0.5>"

    path = tmp_path / "styles.csv"
    styles = StyleDatabase([path])
    styles.set_style(PromptStyle("Cinematic", "{prompt}, cinematic", "cartoon"))
    prompt = styles.apply_styles_to_prompt("a dog", ["Cinematic"])
    negative = styles.apply_negative_styles_to_prompt("ugly", ["Cinematic"])
    text = f"{prompt}\nNegative prompt: {negative}\nSteps: 1, Sampler: Euler, Seed: 1"
    parsed = parse_generation_parameters(text, style_db=styles)
    assert parsed["Styles array"] == ["Cinematic"]
    assert parsed["Prompt"] == "a dog" and parsed["Negative prompt"] == "ugly"
    ignored = parse_generation_parameters(text, style_db=styles, infotext_styles="Ignore")
    assert "Styles array" not in ignored and ignored["Prompt"] == "a dog, cinematic"
