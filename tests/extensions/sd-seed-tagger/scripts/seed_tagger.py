"""A test extension written the way community extensions are: only the public A1111 names."""
import gradio as gr
from PIL import ImageOps

from modules import script_callbacks, scripts, shared
from modules.processing import process_images


class SeedTagger(scripts.Script):
    """Always on: appends "<word> <seed>" to every prompt and says so in the infotext."""

    def title(self):
        return "Seed tagger"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        with gr.Accordion("Seed tagger", open=False):
            enabled = gr.Checkbox(value=False, label="Tag prompts with their seeds",
                                  elem_id=self.elem_id("enabled"))
            fail = gr.Checkbox(value=False, label="Fail in postprocess_image")
        return [enabled, fail]

    def process(self, p, enabled, fail):
        if not enabled:
            return
        word = shared.opts.seed_tagger_word
        p.all_prompts = [f"{prompt}, {word} {seed}"
                         for prompt, seed in zip(p.all_prompts, p.all_seeds)]
        p.extra_generation_params["Seed tagger"] = word

    def postprocess_image(self, p, pp, enabled, fail):
        if fail:
            raise ValueError("asked to fail")


class Mirror(scripts.Script):
    """Selectable: generates as usual, then mirrors every image."""

    def title(self):
        return "Mirror"

    def ui(self, is_img2img):
        return [gr.Checkbox(value=True, label="Mirror the images")]

    def run(self, p, mirror):
        processed = process_images(p)
        if mirror:
            processed.images = [ImageOps.mirror(image) for image in processed.images]
        return processed


def on_ui_settings():
    section = ("seed-tagger", "Seed tagger")
    shared.opts.add_option("seed_tagger_word", shared.OptionInfo(
        "seed", "Word put before the seed", section=section).info("used by the Seed tagger"))


saved_files = []
denoiser_steps = []


def on_app_started(demo, app):
    @app.get("/seed-tagger/status")
    def status():
        return {"saved": list(saved_files), "denoiser_calls": len(denoiser_steps),
                "greeting": shared.cmd_opts.seed_tagger_greeting, "ui": demo is not None}


def on_ui_tabs():
    with gr.Blocks(analytics_enabled=False) as tab:
        gr.Markdown("Seed tagger settings live in Settings.", elem_id="seed_tagger_tab_text")
    return [(tab, "Seed tagger", "seed_tagger_tab")]


script_callbacks.on_ui_settings(on_ui_settings)
script_callbacks.on_app_started(on_app_started)
script_callbacks.on_ui_tabs(on_ui_tabs)
script_callbacks.on_image_saved(lambda params: saved_files.append(params.filename))
script_callbacks.on_cfg_denoiser(lambda params: denoiser_steps.append(params.sampling_step))
