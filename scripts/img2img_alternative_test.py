"""img2img alternative test (A1111's built-in img2img script): the noise that gives back the init
image is found by running Euler backwards under the *original* prompt, and img2img starts from
that noise with the new prompt, so that only what the prompt changes changes. The found noise is
kept for the next run with the same image and settings.

Arguments in A1111's order: info, override_sampler, override_prompt, original_prompt,
original_negative_prompt, override_steps, st (decode steps), override_strength, cfg (decode CFG
scale), randomness, sigma_adjustment."""
from dataclasses import dataclass

import gradio as gr
import torch

from modules import scripts, shared
from modules.engine.denoiser import DiscreteDenoiser
from modules.engine.noise_inversion import find_noise_for_latent
from modules.processing import process_images


@dataclass
class FoundNoise:
    key: tuple
    latent: torch.Tensor
    noise: torch.Tensor


class Script(scripts.Script):
    def __init__(self):
        self.cache = None

    def title(self):
        return "img2img alternative test"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        info = gr.Markdown("* `CFG Scale` should be 2 or lower.")
        override_sampler = gr.Checkbox(label="Override `Sampling method` to Euler?(this method "
                                       "is built for it)", value=True,
                                       elem_id=self.elem_id("override_sampler"))
        override_prompt = gr.Checkbox(label="Override `prompt` to the same value as `original "
                                      "prompt`?(and `negative prompt`)", value=True,
                                      elem_id=self.elem_id("override_prompt"))
        original_prompt = gr.Textbox(label="Original prompt", lines=1,
                                     elem_id=self.elem_id("original_prompt"))
        original_negative_prompt = gr.Textbox(label="Original negative prompt", lines=1,
                                              elem_id=self.elem_id("original_negative_prompt"))
        override_steps = gr.Checkbox(label="Override `Sampling Steps` to the same value as "
                                     "`Decode steps`?", value=True,
                                     elem_id=self.elem_id("override_steps"))
        st = gr.Slider(label="Decode steps", minimum=1, maximum=150, step=1, value=50,
                       elem_id=self.elem_id("st"))
        override_strength = gr.Checkbox(label="Override `Denoising strength` to 1?", value=True,
                                        elem_id=self.elem_id("override_strength"))
        cfg = gr.Slider(label="Decode CFG scale", minimum=0.0, maximum=15.0, step=0.1,
                        value=1.0, elem_id=self.elem_id("cfg"))
        randomness = gr.Slider(label="Randomness", minimum=0.0, maximum=1.0, step=0.01,
                               value=0.0, elem_id=self.elem_id("randomness"))
        sigma_adjustment = gr.Checkbox(label="Sigma adjustment for finding noise for image",
                                       value=False, elem_id=self.elem_id("sigma_adjustment"))
        return [info, override_sampler, override_prompt, original_prompt,
                original_negative_prompt, override_steps, st, override_strength, cfg,
                randomness, sigma_adjustment]

    def run(self, p, _, override_sampler, override_prompt, original_prompt,
            original_negative_prompt, override_steps, st, override_strength, cfg, randomness,
            sigma_adjustment):
        st, cfg, randomness = int(st), float(cfg), float(randomness)
        if not 0.0 <= randomness <= 1.0:
            raise ValueError(f"Randomness must be between 0 and 1, got {randomness}")
        if override_sampler:
            p.sampler_name = "Euler"
        if override_prompt:
            p.prompt, p.negative_prompt = original_prompt, original_negative_prompt
        if override_steps:
            p.steps = st
        if override_strength:
            p.denoising_strength = 1.0
        p.extra_generation_params = {**(p.extra_generation_params or {}),
                                     "Decode prompt": original_prompt,
                                     "Decode negative prompt": original_negative_prompt,
                                     "Decode CFG scale": cfg, "Decode steps": st,
                                     "Randomness": randomness,
                                     "Sigma Adjustment": bool(sigma_adjustment)}
        settings = (original_prompt, original_negative_prompt, cfg, st, bool(sigma_adjustment))

        def start_noise(run, batch, init_latent):
            found = self._found_noise(run, batch, init_latent, settings)
            random_noise = batch.rng.first().to(found)
            mixed = ((1 - randomness) * found + randomness * random_noise) / \
                ((randomness ** 2 + (1 - randomness) ** 2) ** 0.5)
            # the engine starts img2img at init_latent + noise · sigma_max: start at mixed · sigma
            sigma_max = DiscreteDenoiser(run.model).sigma_max
            return mixed - init_latent.to(mixed) / sigma_max

        p.start_noise = start_noise
        return process_images(p)

    def _found_noise(self, run, batch, init_latent, settings):
        prompt, negative, cfg, steps, sigma_adjustment = settings
        cached = self.cache
        if cached is not None and cached.key == settings and \
                cached.latent.shape == init_latent.shape and \
                torch.equal(cached.latent, init_latent.cpu()):
            return cached.noise.to(init_latent.device)
        conditioning = run.conditioning([prompt] * batch.size, [negative] * batch.size, steps,
                                        width=run.plan.width, height=run.plan.height)
        conditioning.image_cond = batch.conditioning.image_cond
        shared.state.textinfo = "Finding the noise of the image"
        noise = find_noise_for_latent(run.model, conditioning, init_latent, steps=steps,
                                      cfg_scale=cfg, sigma_adjustment=sigma_adjustment)
        self.cache = FoundNoise(settings, init_latent.cpu().clone(), noise.cpu())
        return noise
