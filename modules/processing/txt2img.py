"""txt2img: prompts → conditioning → sampling → decode → infotext → save (A1111's process_images)."""
from __future__ import annotations

import datetime
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modules.engine.conditioning import PromptEncoder, build_batch_conditioning
from modules.engine.noise import ImageRNG
from modules.engine.prompt_parser import extract_extra_networks
from modules.engine.sampling import SamplingInterrupted, sample
from modules.engine.tiling import circular_padding
from modules.engine.tokenizer import get_clip_tokenizer
from modules.processing.context import ProcessingContext
from modules.processing.generation_info import InfotextSource, infotext_for
from modules.processing.image_conditioning import txt2img_image_conditioning
from modules.processing.images import image_grid, save_image, write_params_txt
from modules.processing.params import GenerationParams, Processed
from modules.processing.setup import GenerationPlan, plan_generation, reject_unsupported
from modules.version import INFOTEXT_VERSION

log = logging.getLogger(__name__)


def latents_to_images(model, latents: torch.Tensor) -> list[Image.Image]:
    vae = model.first_stage_model
    vae_dtype = next(vae.parameters()).dtype
    with torch.inference_mode():
        decoded = model.decode_first_stage(latents.to(model.device, vae_dtype)).float()
    pixels = ((decoded + 1.0) / 2.0).clamp(0, 1).mul(255).round().to(torch.uint8)
    array = pixels.permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(img)) for img in array]


def _selected_vae(ctx: ProcessingContext) -> tuple[str | None, str | None, str | None]:
    """(path, name, hash10) of the external VAE chosen in settings, or Nones for the model's own."""
    choice = ctx.options.get("sd_vae")
    if not choice or choice in ("Automatic", "None") or ctx.vaes is None:
        return None, None, None
    found = ctx.vaes.find(choice)
    if found is None:
        raise FileNotFoundError(f"VAE '{choice}' not found in {ctx.paths.vae_dir}")
    return str(found.filename), Path(found.filename).name, found.shorthash()


def _save_outputs(params: GenerationParams, ctx: ProcessingContext, images: list[Image.Image],
                  infotexts: list[str], plan: GenerationPlan, namegen: dict) -> list[str]:
    opts = ctx.options
    saved: list[str] = []
    if params.do_not_save_samples or not opts.get("samples_save"):
        return saved
    outdir = Path(params.outpath_samples or ctx.paths.resolve_output(opts.get("outdir_txt2img_samples")))
    for index, image in enumerate(images):
        path, _ = save_image(
            image, outdir, seed=plan.seeds[index], prompt=plan.prompts[index],
            extension=opts.get("samples_format"), infotext=infotexts[index],
            jpeg_quality=opts.get("jpeg_quality"),
            filename_pattern=opts.get("samples_filename_pattern") or "[seed]",
            dir_pattern=opts.get("directories_filename_pattern") if opts.get("save_to_dirs") else None,
            namegen_context={**namegen, "seed": plan.seeds[index], "prompt": plan.prompts[index]})
        saved.append(path)
    return saved


def run_txt2img(params: GenerationParams, ctx: ProcessingContext) -> Processed:
    reject_unsupported(params)
    opts = ctx.options
    plan = plan_generation(params, ctx)
    vae_path, vae_name, vae_hash = _selected_vae(ctx)
    loaded = ctx.model_manager.get(opts.get("sd_model_checkpoint"), vae_path=vae_path)
    model, info = loaded.model, loaded.info

    clip_skip = int(opts.get("CLIP_stop_at_last_layers") or 1)
    encoder = PromptEncoder(model, get_clip_tokenizer(), emphasis=opts.get("emphasis"),
                            clip_skip=clip_skip,
                            comma_padding_backtrack=opts.get("comma_padding_backtrack"),
                            sdxl_clip_l_skip=bool(opts.get("sdxl_clip_l_skip")))
    tiling = bool(params.tiling if params.tiling is not None else opts.get("tiling"))
    progress = ctx.progress
    progress.begin(params.n_iter)
    job_timestamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")

    images: list[Image.Image] = []
    infotexts: list[str] = []
    kept_indexes: list[int] = []
    sampling_extra: dict = {}
    latent_shape = (model.config.latent_channels, plan.height // 8, plan.width // 8)
    for batch_no in range(params.n_iter):
        if progress.interrupted:
            break
        if batch_no:
            progress.next_job()
        lo, hi = batch_no * params.batch_size, (batch_no + 1) * params.batch_size
        prompts = [p if params.disable_extra_networks else extract_extra_networks(p)[0]
                   for p in plan.prompts[lo:hi]]
        negatives = [extract_extra_networks(p)[0] for p in plan.negative_prompts[lo:hi]]
        rng = ImageRNG(latent_shape, plan.seeds[lo:hi], plan.subseeds[lo:hi],
                       subseed_strength=params.subseed_strength,
                       seed_resize_from_h=params.seed_resize_from_h,
                       seed_resize_from_w=params.seed_resize_from_w,
                       source=opts.get("randn_source"), device=model.device)
        with torch.inference_mode(), circular_padding(model.model, model.first_stage_model,
                                                      enabled=tiling):
            conditioning = build_batch_conditioning(encoder, prompts, negatives, params.steps,
                                                    width=plan.width, height=plan.height)
            conditioning.image_cond = txt2img_image_conditioning(model, len(prompts), plan.width,
                                                                 plan.height)
            try:
                result = sample(
                    model, conditioning, rng, sampler_name=plan.sampler_name,
                    scheduler=plan.scheduler_label, steps=params.steps, cfg_scale=params.cfg_scale,
                    eta=params.eta, eta_ddim_default=opts.get("eta_ddim"),
                    eta_ancestral_default=opts.get("eta_ancestral"),
                    s_churn=_pick(params.s_churn, opts.get("s_churn")),
                    s_tmin=_pick(params.s_tmin, opts.get("s_tmin")),
                    s_tmax=_pick(params.s_tmax, opts.get("s_tmax")),
                    s_noise=_pick(params.s_noise, opts.get("s_noise")),
                    s_min_uncond=_pick(params.s_min_uncond, opts.get("s_min_uncond")),
                    sigma_min=opts.get("sigma_min"), sigma_max=opts.get("sigma_max"),
                    rho=opts.get("rho"), eta_noise_seed_delta=opts.get("eta_noise_seed_delta"),
                    callback=progress.on_sampling_step, seeds=plan.seeds[lo:hi])
            except SamplingInterrupted:  # the sampler returns what it has; this is a safety net
                break
            sampling_extra = result.extra_generation_params
            if progress.skipped:   # cleared by next_job() when the next batch starts
                continue
            batch_images = latents_to_images(model, result.latent)
        images.extend(batch_images)
        kept_indexes.extend(range(lo, lo + len(batch_images)))

    source = InfotextSource(
        steps=params.steps, sampler_name=plan.sampler_name, scheduler_label=plan.scheduler_label,
        cfg_scale=params.cfg_scale, width=plan.width, height=plan.height,
        model_hash=info.shorthash, model_name=Path(info.filename).stem,
        vae_hash=vae_hash, vae_name=vae_name, subseed_strength=params.subseed_strength,
        seed_resize_from_w=params.seed_resize_from_w, seed_resize_from_h=params.seed_resize_from_h,
        clip_skip=clip_skip, rng=opts.get("randn_source"), tiling=tiling, extra=dict(sampling_extra))
    for index in kept_indexes:
        infotexts.append(infotext_for(source, opts, prompt=plan.prompts[index],
                                      negative_prompt=plan.negative_prompts[index],
                                      seed=plan.seeds[index], subseed=plan.subseeds[index]))
    namegen = {"steps": params.steps, "cfg": params.cfg_scale, "width": plan.width,
               "height": plan.height, "sampler": plan.sampler_name, "job_timestamp": job_timestamp,
               "model_name": Path(info.filename).stem, "model_hash": info.shorthash,
               "styles": plan.styles}
    saved = _save_outputs(params, ctx, images, infotexts, _kept_plan(plan, kept_indexes), namegen)
    if infotexts:
        write_params_txt(ctx.paths.params_file, infotexts[0])

    index_of_first_image = 0
    grid_only_single = len(images) < 2 and opts.get("grid_only_if_multiple")
    if (opts.get("return_grid") or opts.get("grid_save")) and not params.do_not_save_grid \
            and not grid_only_single and images:
        grid = image_grid(images, rows=opts.get("n_rows"))
        if opts.get("grid_save"):
            grid_dir = Path(params.outpath_grids
                            or ctx.paths.resolve_output(opts.get("outdir_txt2img_grids")))
            grid_path, _ = save_image(
                grid, grid_dir, basename="grid", seed=plan.seed, prompt=plan.prompts[0],
                extension=opts.get("grid_format"), infotext=infotexts[0],
                filename_pattern="", dir_pattern=opts.get("directories_filename_pattern")
                if opts.get("grid_save_to_dirs") else None)
            saved.append(grid_path)
        if opts.get("return_grid"):
            images.insert(0, grid)
            infotexts.insert(0, infotexts[0])
            index_of_first_image = 1

    extra_params = dict(sampling_extra)
    if plan.scheduler_label != "Automatic":
        extra_params.setdefault("Schedule type", plan.scheduler_label)
    return Processed(
        images=images, prompt=plan.prompts[0], all_prompts=plan.prompts,
        negative_prompt=plan.negative_prompts[0], all_negative_prompts=plan.negative_prompts,
        seed=plan.seed, all_seeds=plan.seeds, subseed=plan.subseed, all_subseeds=plan.subseeds,
        subseed_strength=params.subseed_strength, width=plan.width, height=plan.height,
        sampler_name=plan.sampler_name, cfg_scale=params.cfg_scale, steps=params.steps,
        batch_size=params.batch_size, restore_faces=False, face_restoration_model=None,
        sd_model_name=Path(info.filename).stem, sd_model_hash=info.shorthash,
        sd_vae_name=vae_name, sd_vae_hash=vae_hash,
        seed_resize_from_w=params.seed_resize_from_w, seed_resize_from_h=params.seed_resize_from_h,
        denoising_strength=params.denoising_strength, extra_generation_params=extra_params,
        index_of_first_image=index_of_first_image, infotexts=infotexts, styles=plan.styles,
        job_timestamp=job_timestamp, clip_skip=clip_skip,
        is_using_inpainting_conditioning=model.config.variant == "inpaint",
        version=INFOTEXT_VERSION, saved_files=saved)


def _pick(value, default):
    return default if value is None else value


def _kept_plan(plan: GenerationPlan, kept: list[int]) -> GenerationPlan:
    """The plan restricted to the images that were kept (skip drops a batch)."""
    return GenerationPlan(
        width=plan.width, height=plan.height, sampler_name=plan.sampler_name,
        scheduler_label=plan.scheduler_label, prompts=[plan.prompts[i] for i in kept],
        negative_prompts=[plan.negative_prompts[i] for i in kept],
        seeds=[plan.seeds[i] for i in kept], subseeds=[plan.subseeds[i] for i in kept],
        seed=plan.seed, subseed=plan.subseed, styles=plan.styles)
