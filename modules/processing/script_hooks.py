"""Where the generation loop calls the always-on scripts' hooks (A1111's process_images order,
a1111-compat.md §8.2), and how what the hooks write to `p` is taken back into the job.

Every function is a no-op for a job without scripts. A hook that raises is reported by the
runner (its message goes into `p.script_errors`, shown with the result) and the job goes on.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PIL import Image

from modules.processing.context import UnsupportedRequestError
from modules.scripting.callback_params import (AfterCFGCallbackParams, CFGDenoisedParams,
                                               CFGDenoiserParams, ExtraNoiseParams)
from modules.scripting.script import (MaskBlendArgs, PostprocessBatchListArgs,
                                      PostprocessImageArgs, PostProcessMaskOverlayArgs,
                                      PostSampleArgs, Script)

if TYPE_CHECKING:
    import torch

    from modules.processing.pipeline import PipelineRun
    from modules.processing.setup import GenerationPlan


def call(p: Any, hook: str, *leading: Any, **kwargs: Any) -> None:
    runner = getattr(p, "scripts", None)
    if runner is not None:
        runner.call(hook, p, *leading, **kwargs)


def before_process(p: Any) -> None:
    call(p, "before_process")


def process(p: Any, plan: "GenerationPlan") -> None:
    """Show the job's prompts and seeds to the `process` hook (`p.all_prompts`, `all_seeds`, …)
    and take back what it wrote: the plan the batches are sampled from."""
    if not hasattr(p, "all_prompts"):
        return
    p.all_prompts, p.all_negative_prompts = list(plan.prompts), list(plan.negative_prompts)
    p.all_seeds, p.all_subseeds = list(plan.seeds), list(plan.subseeds)
    p.seed, p.subseed = plan.seed, plan.subseed
    call(p, "process")
    count = plan.image_count
    for name in ("all_prompts", "all_negative_prompts", "all_seeds", "all_subseeds"):
        values = getattr(p, name)
        if not isinstance(values, (list, tuple)) or len(values) < count:
            raise UnsupportedRequestError(f"a script set p.{name} to {len(values or [])} "
                                          f"entries; the job has {count} images")
    plan.prompts = [str(prompt) for prompt in p.all_prompts[:count]]
    plan.negative_prompts = [str(prompt) for prompt in p.all_negative_prompts[:count]]
    plan.seeds = [int(seed) for seed in p.all_seeds[:count]]
    plan.subseeds = [int(seed) for seed in p.all_subseeds[:count]]
    plan.seed, plan.subseed = plan.seeds[0], plan.subseeds[0]


def batch(p: Any, plan: "GenerationPlan", batch_number: int, start: int,
          end: int) -> tuple[list[str], list[str], list[int], list[int]]:
    """`before_process_batch` and `process_batch` for one batch: (prompts, negative prompts,
    seeds, subseeds) of the batch after the hooks (they may edit `p.prompts` … in place)."""
    prompts, negatives = plan.prompts[start:end], plan.negative_prompts[start:end]
    seeds, subseeds = plan.seeds[start:end], plan.subseeds[start:end]
    if getattr(p, "scripts", None) is None:
        return prompts, negatives, seeds, subseeds
    p.iteration = batch_number
    p.prompts, p.negative_prompts, p.seeds, p.subseeds = prompts, negatives, seeds, subseeds
    for hook in ("before_process_batch", "process_batch"):
        call(p, hook, batch_number=batch_number, prompts=p.prompts, seeds=p.seeds,
             subseeds=p.subseeds)
    return list(p.prompts), list(p.negative_prompts), list(p.seeds), list(p.subseeds)


def post_sample(p: Any, latents: "torch.Tensor") -> "torch.Tensor":
    if getattr(p, "scripts", None) is None:
        return latents
    args = PostSampleArgs(latents)
    call(p, "post_sample", args)
    return args.samples


def postprocess_batch(p: Any, pixels: "torch.Tensor", batch_number: int) -> "torch.Tensor":
    """The decoded batch ([B, 3, H, W] in [0, 1]) before it becomes images."""
    call(p, "postprocess_batch", images=pixels, batch_number=batch_number)
    return pixels


def postprocess_images(p: Any, images: list[Image.Image], batch_number: int,
                       ) -> list[Image.Image]:
    """`postprocess_batch_list` (may add or remove images) then `postprocess_image` per image."""
    if getattr(p, "scripts", None) is None:
        return images
    batch_list = PostprocessBatchListArgs(list(images))
    call(p, "postprocess_batch_list", batch_list, batch_number=batch_number)
    finished = []
    for image in batch_list.images:
        args = PostprocessImageArgs(image)
        call(p, "postprocess_image", args)
        finished.append(args.image)
    return finished


def after_composite(p: Any, images: list[Image.Image]) -> list[Image.Image]:
    if getattr(p, "scripts", None) is None:
        return images
    finished = []
    for image in images:
        args = PostprocessImageArgs(image)
        call(p, "postprocess_image_after_composite", args)
        finished.append(args.image)
    return finished


def before_every_sampling(p: Any, conditioning: Any, rng: Any, init_latent: Any) -> None:
    """A1111's process_before_every_sampling(p, x=, noise=, c=, uc=) before each sampling (the
    first pass, the hires pass, the refiner's part): x is the init latent (txt2img: the noise).
    Scripts read them; what they assign to them is not used (the engine makes its own start)."""
    runner = getattr(p, "scripts", None)
    if runner is None or not any(_overrides(script, "process_before_every_sampling")
                                 for script in runner.alwayson):
        return
    noise = rng.first()
    call(p, "process_before_every_sampling", x=noise if init_latent is None else init_latent,
         noise=noise, c=conditioning.conds, uc=conditioning.unconds)


def mask_overlays(p: Any, mask: Any, overlays: list[Image.Image]) -> list[Image.Image]:
    """postprocess_maskoverlay for each inpainted image: the overlays scripts leave (a script
    may also replace the mask in its args; the overlay already carries it)."""
    if getattr(p, "scripts", None) is None:
        return overlays
    finished = []
    for index, overlay in enumerate(overlays):
        args = PostProcessMaskOverlayArgs(index, mask, overlay)
        call(p, "postprocess_maskoverlay", args)
        finished.append(args.overlay_image)
    return finished


def before_hr(run: "PipelineRun") -> None:
    call(run.params, "before_hr")


CFG_CALLBACKS = ("cfg_denoiser", "cfg_denoised", "cfg_after_cfg")


class CallbackDenoiserHooks:
    """The engine's DenoiserHooks as the extensions' on_cfg_denoiser / on_cfg_denoised /
    on_cfg_after_cfg callbacks (A1111's parameter objects; what a callback assigns is used), and
    its inpainting mask blend as the always-on scripts' on_mask_blend hook."""

    def __init__(self, callbacks: Any, p: Any = None) -> None:
        self.callbacks = callbacks      # None: no cfg callbacks, only the mask blend hook
        self.p = p

    def mask_blend(self, denoiser: Any, current: Any, blended: Any, sigma: Any) -> Any:
        keep = 1 - denoiser.inpaint_mask.to(current)
        args = MaskBlendArgs(current_latent=current, nmask=1 - keep,
                             init_latent=denoiser.original_latent.to(current), mask=keep,
                             blended_latent=blended, denoiser=denoiser, sigma=sigma)
        call(self.p, "on_mask_blend", args)
        return args.blended_latent

    def before_unet(self, denoiser: Any, x: Any, sigma: Any, crossattn: Any) -> tuple[Any, Any]:
        if self.callbacks is None:
            return x, crossattn
        # the cond rows (every AND part of every image) come first, then the unconds
        conds = sum(len(composable.parts) for composable in denoiser.conditioning.conds)
        text_cond, text_uncond = crossattn[:conds], crossattn[conds:]
        params = CFGDenoiserParams(x=x, image_cond=denoiser.conditioning.image_cond, sigma=sigma,
                                   sampling_step=denoiser.step,
                                   total_sampling_steps=denoiser.total_steps,
                                   text_cond=text_cond, text_uncond=text_uncond,
                                   denoiser=denoiser)
        self.callbacks.run("cfg_denoiser", params)
        if params.text_cond is not text_cond or params.text_uncond is not text_uncond:
            import torch
            crossattn = torch.cat([params.text_cond, params.text_uncond])
        return params.x, crossattn

    def after_unet(self, denoiser: Any, outputs: Any) -> Any:
        if self.callbacks is None:
            return outputs
        params = CFGDenoisedParams(x=outputs, sampling_step=denoiser.step,
                                   total_sampling_steps=denoiser.total_steps,
                                   inner_model=denoiser.denoiser)
        self.callbacks.run("cfg_denoised", params)
        return params.x

    def after_cfg(self, denoiser: Any, denoised: Any) -> Any:
        if self.callbacks is None:
            return denoised
        params = AfterCFGCallbackParams(x=denoised, sampling_step=denoiser.step,
                                        total_sampling_steps=denoiser.total_steps)
        self.callbacks.run("cfg_after_cfg", params)
        return params.x


def _overrides(script: Any, hook: str) -> bool:
    return getattr(type(script), hook, None) is not getattr(Script, hook)


def denoiser_hooks(context: Any, p: Any = None) -> CallbackDenoiserHooks | None:
    """Hooks for the sampler's CFG calls, only when an extension registered a cfg callback or
    an always-on script of `p` has an on_mask_blend hook."""
    callbacks = getattr(context, "callbacks", None)
    has_callbacks = callbacks is not None and any(callbacks.callbacks(kind)
                                                  for kind in CFG_CALLBACKS)
    runner = getattr(p, "scripts", None)
    blends = runner is not None and any(_overrides(script, "on_mask_blend")
                                        for script in runner.alwayson)
    if not (has_callbacks or blends):
        return None
    return CallbackDenoiserHooks(callbacks if has_callbacks else None, p)


def extra_noise_hook(context: Any) -> Any:
    """The extensions' on_extra_noise callbacks as the engine's extra_noise_hook, or None."""
    callbacks = getattr(context, "callbacks", None)
    if callbacks is None or not callbacks.callbacks("extra_noise"):
        return None

    def hook(noise: Any, init_latent: Any, start: Any) -> Any:
        params = ExtraNoiseParams(noise=noise, x=init_latent, xi=start)
        callbacks.run("extra_noise", params)
        return params.noise

    return hook


def save_callbacks(callbacks: Any, p: Any) -> dict[str, Any]:
    """save_image's on_before_save / on_saved: the extensions' on_before_image_saved /
    on_image_saved callbacks (a CallbackRegistry or None), with `p` in their ImageSaveParams."""
    if callbacks is None:
        return {}

    def before(params: Any) -> None:
        params.p = p
        callbacks.run("before_image_saved", params)

    def after(params: Any) -> None:
        params.p = p
        callbacks.run("image_saved", params)

    return {"on_before_save": before, "on_saved": after}


def comments(p: Any, progress: Any) -> str:
    """Why the job stopped early and which scripts failed: the result's comments."""
    parts = [getattr(progress, "interrupt_reason", None) or ""]
    parts.extend(getattr(p, "script_errors", None) or [])
    return "\n".join(part for part in parts if part)
