"""The generation loop shared by txt2img and img2img (A1111's `process_images`).

A `GenerationMode` says how one batch is sampled (txt2img from noise, img2img from init images, a
hires second pass, a refiner switch) and how its images are finished (inpaint compositing); this
module does everything around it: plan, model, prompts, seeds, batches, decode, infotext, saving,
grid, progress.
"""
from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from modules.app.model_manager import LoadedModel
from modules.engine.conditioning import PromptEncoder, build_batch_conditioning
from modules.engine.cond_types import BatchConditioning
from modules.engine.noise import ImageRNG
from modules.engine.prompt_parser import extract_extra_networks
from modules.processing.vae_choice import resolve_vae
from modules.processing.extra_networks import JobNetworks
from modules.engine.sampling import SamplingInterrupted, SamplingResult, sample
from modules.engine.tiling import circular_padding
from modules.engine.tokenizer import get_clip_tokenizer
from modules.engine.taesd import find_taesd_decoder, load_taesd_decoder, taesd_decoder_stem
from modules.processing import script_hooks
from modules.processing.context import ProcessingContext
from modules.processing.face_restoration import face_restorer_for_job, restore_faces
from modules.processing.generation_info import InfotextSource, infotext_for
from modules.processing.images import image_grid, save_image, write_params_txt
from modules.processing.memory_guard import JobShape, MemoryGuard, ModelFootprint
from modules.processing.params import GenerationParams, Processed
from modules.processing.previews import live_previews_for_job, vae_approx_dir
from modules.processing.refiner import RefinerPrompts, resolve_refiner, sample_with_refiner
from modules.processing.setup import GenerationPlan, plan_generation
from modules.version import INFOTEXT_VERSION

log = logging.getLogger(__name__)


def latents_to_images(model, latents: torch.Tensor,
                      memory: MemoryGuard | None = None) -> list[Image.Image]:
    return tensors_to_images(decode_latents(model, latents, memory))


def decode_latents(model, latents: torch.Tensor, memory: MemoryGuard | None = None, *,
                   upcast_on_nan: bool = False) -> torch.Tensor:
    """Latents → images in [0, 1], float32 [B, 3, H, W] (VAE in its own dtype); the whole batch,
    image by image or in tiles, whichever fits in the free memory (`memory`). `upcast_on_nan`
    (A1111's auto_vae_precision): a half-precision VAE that decodes NaNs is turned to float32
    for good and the batch decoded again."""
    memory = memory or MemoryGuard()
    decoded = memory.decode(model, latents)
    vae = model.first_stage_model
    if upcast_on_nan and next(vae.parameters()).dtype != torch.float32 \
            and torch.isnan(decoded).any():
        log.warning("The %s VAE decoded NaNs; it runs in float32 from now on (setting "
                    "'Automatically revert VAE to 32-bit floats'; --no-half-vae starts so)",
                    next(vae.parameters()).dtype)
        vae.to(torch.float32)
        decoded = memory.decode(model, latents)
    return decoded


def tensors_to_images(pixels: torch.Tensor) -> list[Image.Image]:
    array = pixels.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(img)) for img in array]


def images_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """PIL RGB images (same size) → float32 [B, 3, H, W] in [0, 1]."""
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def encode_images(model, pixels: torch.Tensor, generator: torch.Generator | None = None,
                  memory: MemoryGuard | None = None) -> torch.Tensor:
    """Images in [0, 1] [B, 3, H, W] → scaled latents (float32); in tiles when a whole encode
    does not fit in the free memory (`memory`)."""
    return (memory or MemoryGuard()).encode(model, pixels, generator)


@dataclass
class BatchWork:
    """One batch of the job: which images, their prompts, seeds, conditioning and noise."""
    index: int
    start: int                      # index of the batch's first image in the job
    prompts: list[str]              # as in infotext (extra-network tags kept)
    negative_prompts: list[str]
    seeds: list[int]
    subseeds: list[int]
    conditioning: BatchConditioning
    rng: ImageRNG

    @property
    def size(self) -> int:
        return len(self.prompts)


class GenerationMode(Protocol):
    """What differs between txt2img, img2img and their passes."""
    kind: str                       # "txt2img" | "img2img": output folders and job names
    #: sub-jobs per batch for progress (a hires fix job counts both passes)
    passes_per_batch: int

    def prepare(self, run: "PipelineRun") -> None:
        """Once per job, after the model is loaded (load init images, masks, upscalers…)."""

    def sample(self, run: "PipelineRun", batch: BatchWork) -> torch.Tensor:
        """The final latents of the batch (raise SamplingInterrupted to stop the job)."""

    def finish_images(self, run: "PipelineRun", batch: BatchWork,
                      images: list[Image.Image]) -> list[Image.Image]:
        """Decoded images → output images (inpaint compositing, overlays)."""

    def memory_shape(self, run: "PipelineRun") -> JobShape:
        """The sizes the job samples and VAE-encodes at (for the memory guard)."""


@dataclass
class PipelineRun:
    """Per-job state a mode may use. Created by `run_generation`."""
    params: GenerationParams
    ctx: ProcessingContext
    plan: GenerationPlan
    loaded: LoadedModel
    encoder: PromptEncoder
    tiling: bool
    clip_skip: int
    #: infotext keys the mode adds (in insertion order, after the fixed ones)
    extra_params: dict[str, Any] = field(default_factory=dict)
    #: "Denoising strength" slot of the infotext (img2img, hires)
    denoising_strength: float | None = None
    is_using_inpainting_conditioning: bool = False
    #: the job's SDXL refiner (refiner.RefinerRequest) or None; `sample` hands over to it
    refiner: Any = None
    #: the job's LoRAs (extra_networks.JobNetworks): a patch per batch, hashes, warnings
    networks: Any = None
    #: the batch being sampled (the refiner encodes its prompts again with its own encoder)
    batch: BatchWork | None = None
    #: what the user should know about the result (shown with it, as A1111's comments)
    notes: list[str] = field(default_factory=list)
    #: the TAESD decoder of the final decode (sd_vae_decode_method TAESD), read at first use
    final_taesd: Any = None

    @property
    def model(self):
        return self.loaded.model

    @property
    def options(self):
        return self.ctx.options

    @property
    def progress(self):
        return self.ctx.progress

    def make_encoder(self, model) -> PromptEncoder:
        opts = self.options
        return PromptEncoder(model, model.tokenizer or get_clip_tokenizer(),
                             emphasis=opts.get("emphasis"),
                             clip_skip=self.clip_skip,
                             comma_padding_backtrack=opts.get("comma_padding_backtrack"),
                             sdxl_clip_l_skip=bool(opts.get("sdxl_clip_l_skip")),
                             sdxl_crop_top=int(opts.get("sdxl_crop_top") or 0),
                             sdxl_crop_left=int(opts.get("sdxl_crop_left") or 0),
                             refiner_positive_aesthetic=float(
                                 opts.get("sdxl_refiner_high_aesthetic_score")),
                             refiner_negative_aesthetic=float(
                                 opts.get("sdxl_refiner_low_aesthetic_score")),
                             embeddings=self.ctx.embeddings.vocabulary_for(model)
                             if self.ctx.embeddings is not None else None,
                             output_hook=self.text_encoder_output_hook)

    def text_encoder_output_hook(self, tokens: torch.Tensor, features: torch.Tensor,
                                 encoder_config) -> torch.Tensor:
        """What the scripts of the job registered in `p.text_encoder_output_hooks` (read at
        each encoding: the `process` hooks run after the encoder is made)."""
        for hook in getattr(self.params, "text_encoder_output_hooks", None) or ():
            features = hook(tokens, features, encoder_config)
        return features

    def conditioning(self, prompts: list[str], negative_prompts: list[str], steps: int, *,
                     width: int, height: int, encoder: PromptEncoder | None = None,
                     hires_steps: int | None = None) -> BatchConditioning:
        """Prompts (extra-network tags removed here) → conditioning for the sampler."""
        keep_tags = self.params.disable_extra_networks
        prompts = [p if keep_tags else extract_extra_networks(p)[0] for p in prompts]
        negative_prompts = [extract_extra_networks(p)[0] for p in negative_prompts]
        return build_batch_conditioning(
            encoder or self.encoder, prompts, negative_prompts, steps, width=width,
            height=height, hires_steps=hires_steps,
            use_old_scheduling=bool(self.options.get("use_old_scheduling")))

    def decode(self, latents: torch.Tensor, model=None) -> torch.Tensor:
        """The job's decode (its model's VAE unless told; the NaN fallback as set)."""
        return decode_latents(model or self.model, latents, self.ctx.memory,
                              upcast_on_nan=bool(self.options.get("auto_vae_precision")))

    def decode_final(self, latents: torch.Tensor) -> torch.Tensor:
        """A batch's final decode: with the `sd_vae_decode_method` setting at TAESD, the tiny
        autoencoder from models/VAE-approx (fast, a little less detail), else the full VAE."""
        if self.options.get("sd_vae_decode_method") != "TAESD":
            return self.decode(latents)
        if self.final_taesd is None:          # read once per job, not per batch
            folder = vae_approx_dir(self.ctx.paths)
            is_sdxl = bool(self.model.config.is_sdxl)
            path = find_taesd_decoder(folder, is_sdxl=is_sdxl)
            if path is None:
                note = (f"VAE Decoder TAESD: no {taesd_decoder_stem(is_sdxl)}.safetensors "
                        f"(or .pth) in {folder}; the full VAE decoded the image")
                if note not in self.notes:
                    self.notes.append(note)
                return self.decode(latents)
            self.final_taesd = load_taesd_decoder(path, device=self.model.device)
        self.extra_params["VAE Decoder"] = "TAESD"
        return self.final_taesd.decode(latents)

    def make_rng(self, shape: tuple[int, int, int], seeds: list[int],
                 subseeds: list[int]) -> ImageRNG:
        params = self.params
        return ImageRNG(shape, seeds, subseeds, subseed_strength=params.subseed_strength,
                        seed_resize_from_h=params.seed_resize_from_h,
                        seed_resize_from_w=params.seed_resize_from_w,
                        source=self.options.get("randn_source"), device=self.model.device)

    def sample(self, conditioning: BatchConditioning, rng: ImageRNG, *, steps: int,
               use_refiner: bool = True, refiner_prompts: tuple | None = None,
               **kwargs) -> SamplingResult:
        """One batch's sampling; with a refiner requested (and `use_refiner`) the refiner takes
        over at the switch point. `refiner_prompts` = (prompts, negative prompts, width, height,
        hires steps or None) the refiner encodes; default: the current batch at the plan's size.
        Other keywords as `sample_with_model`."""
        if self.refiner is None or not use_refiner:
            return self.sample_with_model(conditioning, rng, steps=steps, **kwargs)
        if refiner_prompts is None:
            batch = self.batch
            refiner_prompts = (batch.prompts, batch.negative_prompts, self.plan.width,
                               self.plan.height, None)
        prompts, negatives, width, height, hires_steps = refiner_prompts
        return sample_with_refiner(self, self.refiner, conditioning, rng, steps=steps,
                                   prompts=RefinerPrompts(prompts, negatives, width, height,
                                                          self.params.steps, hires_steps),
                                   **kwargs)

    def sample_with_model(self, conditioning: BatchConditioning, rng: ImageRNG, *, steps: int,
                          sampler_name: str | None = None, scheduler: str | None = None,
                          model=None, cfg_scale: float | None = None, callback=None,
                          **engine_kwargs) -> SamplingResult:
        """engine.sample with the request's and the settings' sampler parameters filled in.
        `engine_kwargs` passes img2img values (init_latent, denoising_strength, inpaint_mask…)
        and may override a setting (img2img_fix_steps)."""
        params, opts = self.params, self.options
        engine_kwargs.setdefault("img2img_fix_steps", bool(opts.get("img2img_fix_steps")))
        script_hooks.before_every_sampling(params, conditioning, rng,
                                           engine_kwargs.get("init_latent"))
        if engine_kwargs.get("init_latent") is not None:     # img2img and the hires pass
            engine_kwargs.setdefault("extra_noise", float(opts.get("img2img_extra_noise") or 0))
            engine_kwargs.setdefault("extra_noise_hook", script_hooks.extra_noise_hook(self.ctx))
        result = sample(
            model or self.model, conditioning, rng,
            sampler_name=sampler_name or self.plan.sampler_name,
            scheduler=scheduler or self.plan.scheduler_label, steps=steps,
            cfg_scale=params.cfg_scale if cfg_scale is None else cfg_scale,
            eta=params.eta, eta_ddim_default=opts.get("eta_ddim"),
            eta_ancestral_default=opts.get("eta_ancestral"),
            s_churn=_pick(params.s_churn, opts.get("s_churn")),
            s_tmin=_pick(params.s_tmin, opts.get("s_tmin")),
            s_tmax=_pick(params.s_tmax, opts.get("s_tmax")),
            s_noise=_pick(params.s_noise, opts.get("s_noise")),
            s_min_uncond=_pick(params.s_min_uncond, opts.get("s_min_uncond")),
            sigma_min=opts.get("sigma_min"), sigma_max=opts.get("sigma_max"), rho=opts.get("rho"),
            eta_noise_seed_delta=opts.get("eta_noise_seed_delta"),
            beta_dist_alpha=opts.get("beta_dist_alpha"), beta_dist_beta=opts.get("beta_dist_beta"),
            uni_pc_variant=opts.get("uni_pc_variant"), uni_pc_skip_type=opts.get("uni_pc_skip_type"),
            uni_pc_order=opts.get("uni_pc_order"),
            uni_pc_lower_order_final=opts.get("uni_pc_lower_order_final"),
            always_discard_next_to_last_sigma=opts.get("always_discard_next_to_last_sigma"),
            callback=callback or self.progress.on_sampler_step, seeds=rng.seeds,
            denoiser_hooks=script_hooks.denoiser_hooks(self.ctx, self.params),
            control=getattr(params, "control_patch", None), **engine_kwargs)
        for key, value in result.extra_generation_params.items():
            self.extra_params.setdefault(key, value)
        return result


def _pick(value, default):
    return default if value is None else value


def output_folder(opts: Any, paths: Any, kind: str, *, grids: bool = False) -> Path:
    """Where a tab's images (or grids) go: A1111's `outdir_samples` / `outdir_grids` when set,
    else the per-tab folder (`outdir_txt2img_samples` …)."""
    what = "grids" if grids else "samples"
    return paths.resolve_output(opts.get(f"outdir_{what}") or opts.get(f"outdir_{kind}_{what}"))


def _save_samples(run: PipelineRun, mode: GenerationMode, images: list[Image.Image],
                  infotexts: list[str], indexes: list[int], namegen: dict,
                  incomplete: set[int]) -> list[str]:
    """Save the job's images; those of an interrupted batch only with save_incomplete_images."""
    params, opts, plan = run.params, run.options, run.plan
    if params.do_not_save_samples or not opts.get("samples_save"):
        return []
    outdir = Path(params.outpath_samples or output_folder(opts, run.ctx.paths, mode.kind))
    saved = []
    for image, infotext, index in zip(images, infotexts, indexes):
        if index in incomplete and not opts.get("save_incomplete_images"):
            continue
        path, _ = save_image(
            image, outdir, seed=plan.seeds[index], prompt=plan.prompts[index],
            extension=opts.get("samples_format"), infotext=infotext,
            jpeg_quality=opts.get("jpeg_quality"),
            filename_pattern=opts.get("samples_filename_pattern") or "[seed]",
            dir_pattern=opts.get("directories_filename_pattern") if opts.get("save_to_dirs") else None,
            namegen_context={**namegen, "seed": plan.seeds[index], "prompt": plan.prompts[index]},
            **script_hooks.save_callbacks(run.ctx.callbacks, params))
        saved.append(path)
    return saved


def _sample_batches(run: PipelineRun, mode: GenerationMode, face_restorer
                    ) -> tuple[list[Image.Image], list[int], set[int]]:
    """Every batch of the job: (images, the job indexes they have, the indexes of images of a
    batch the user interrupted)."""
    params, plan, ctx, model, progress = run.params, run.plan, run.ctx, run.model, run.progress
    images: list[Image.Image] = []
    kept: list[int] = []
    incomplete: set[int] = set()
    latent_shape = (model.config.latent_channels, plan.height // 8, plan.width // 8)
    for batch_no in range(params.n_iter):
        if progress.interrupted:
            break
        if batch_no:
            progress.next_job()
        lo = batch_no * params.batch_size
        hi = min(lo + params.batch_size, plan.image_count)
        if lo >= hi:                  # a prompt list shorter than n_iter x batch_size
            break
        prompts, negatives, seeds, subseeds = script_hooks.batch(params, plan, batch_no, lo, hi)
        with torch.inference_mode(), circular_padding(model.model, model.first_stage_model,
                                                      enabled=run.tiling), \
                run.networks.patch_for(prompts):
            batch = BatchWork(
                index=batch_no, start=lo, prompts=prompts, negative_prompts=negatives,
                seeds=seeds, subseeds=subseeds,
                conditioning=run.conditioning(prompts, negatives, params.steps,
                                              width=plan.width, height=plan.height),
                rng=run.make_rng(latent_shape, seeds, subseeds))
            try:
                run.batch = batch
                latents = script_hooks.post_sample(params, mode.sample(run, batch))
            except SamplingInterrupted:   # a mode gave up mid-batch: nothing to decode
                break
            if progress.skipped:          # cleared by next_job() when the next batch starts
                continue
            pixels = script_hooks.postprocess_batch(
                params, run.decode_final(latents), batch_no)
            decoded = tensors_to_images(pixels)
        if face_restorer is not None:
            decoded = restore_faces(decoded, ctx, face_restorer, notes=run.notes)
        decoded = script_hooks.postprocess_images(params, decoded, batch_no)
        batch_images = script_hooks.after_composite(
            params, mode.finish_images(run, batch, decoded))
        images.extend(batch_images)
        # a script may add images to a batch: they share the batch's last prompt and seed
        kept.extend(min(lo + index, hi - 1) for index in range(len(batch_images)))
        if progress.interrupted:
            incomplete.update(range(lo, lo + len(batch_images)))
    return images, kept, incomplete


def run_generation(params: GenerationParams, ctx: ProcessingContext,
                   mode: GenerationMode) -> Processed:
    opts = ctx.options
    script_hooks.before_process(params)
    plan = plan_generation(params, ctx)
    face_restorer = face_restorer_for_job(params, ctx)   # refused here, before any sampling
    checkpoint = ctx.model_manager.resolve(opts.get("sd_model_checkpoint"), warn=False)
    vae = resolve_vae(opts, ctx.vaes, ctx.paths, checkpoint.filename)
    loaded = ctx.model_manager.get(checkpoint.title, vae_path=vae.path)
    clip_skip = int(opts.get("CLIP_stop_at_last_layers") or 1)
    run = PipelineRun(params=params, ctx=ctx, plan=plan, loaded=loaded, encoder=None,  # type: ignore[arg-type]
                      tiling=bool(params.tiling if params.tiling is not None else opts.get("tiling")),
                      clip_skip=clip_skip)
    run.encoder = run.make_encoder(loaded.model)
    run.networks = JobNetworks(
        ctx.loras, loaded.model, float(opts.get("extra_networks_default_multiplier") or 1.0),
        enabled=not params.disable_extra_networks, hypernetworks=ctx.hypernetworks,
        memory=ctx.memory)
    run.refiner = resolve_refiner(params, ctx.model_manager,
                                  bool(opts.get("refiner_switch_by_sample_steps")))
    model, info = loaded.model, loaded.info
    progress = ctx.progress
    # refused here, with the model loaded and nothing else running, before any VAE or UNet work
    ctx.memory.check(ModelFootprint.of(model), mode.memory_shape(run), model.device,
                     available=ctx.memory.budget(model.device))
    with ctx.memory.job_running(model.device):
        mode.prepare(run)
        script_hooks.process(params, plan)
        progress.set_step_listener(live_previews_for_job(
            opts, progress, model=model,
            full_decode=run.decode,
            vae_approx_folder=vae_approx_dir(ctx.paths)))
        progress.begin(params.n_iter * mode.passes_per_batch)
        job_timestamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
        images, kept, incomplete = _sample_batches(run, mode, face_restorer)
        progress.set_step_listener(None)
    if opts.get("textual_inversion_add_hashes_to_infotext") and ctx.embeddings is not None:
        if value := ctx.embeddings.infotext_value(run.encoder.used_embeddings.values()):
            run.extra_params["TI hashes"] = value
    if opts.get("lora_add_hashes_to_infotext") and run.networks.infotext_value():
        run.extra_params["Lora hashes"] = run.networks.infotext_value()
    # what scripts added to p.extra_generation_params goes into the infotext, after ours
    for key, value in (getattr(params, "extra_generation_params", None) or {}).items():
        run.extra_params.setdefault(key, value)
    source = InfotextSource(
        steps=params.steps, sampler_name=plan.sampler_name, scheduler_label=plan.scheduler_label,
        cfg_scale=params.cfg_scale, width=plan.width, height=plan.height,
        model_hash=info.shorthash, model_name=Path(info.filename).stem,
        vae_hash=vae.hash, vae_name=vae.name, subseed_strength=params.subseed_strength,
        seed_resize_from_w=params.seed_resize_from_w, seed_resize_from_h=params.seed_resize_from_h,
        denoising_strength=run.denoising_strength, clip_skip=clip_skip,
        rng=opts.get("randn_source"), tiling=run.tiling,
        face_restoration=face_restorer.name if face_restorer is not None else None,
        extra=dict(run.extra_params))
    infotexts = [infotext_for(source, opts, prompt=plan.prompts[i],
                              negative_prompt=plan.negative_prompts[i], seed=plan.seeds[i],
                              subseed=plan.subseeds[i]) for i in kept]
    for image, text in zip(images, infotexts):
        image.info["parameters"] = text
    namegen = {"steps": params.steps, "cfg": params.cfg_scale, "width": plan.width,
               "height": plan.height, "sampler": plan.sampler_name, "job_timestamp": job_timestamp,
               "model_name": Path(info.filename).stem, "model_hash": info.shorthash,
               "styles": plan.styles}
    saved = _save_samples(run, mode, images, infotexts, kept, namegen, incomplete)
    if infotexts:
        write_params_txt(ctx.paths.params_file, infotexts[0])

    index_of_first_image = 0
    grid_only_single = len(images) < 2 and opts.get("grid_only_if_multiple")
    if (opts.get("return_grid") or opts.get("grid_save")) and not params.do_not_save_grid \
            and not grid_only_single and images:
        grid = image_grid(images, rows=opts.get("n_rows"), batch_size=params.batch_size)
        if opts.get("grid_save"):
            grid_dir = Path(params.outpath_grids
                            or output_folder(opts, ctx.paths, mode.kind, grids=True))
            grid_path, _ = save_image(
                grid, grid_dir, basename="grid", seed=plan.seed, prompt=plan.prompts[0],
                extension=opts.get("grid_format"), infotext=infotexts[0], filename_pattern="",
                dir_pattern=opts.get("directories_filename_pattern")
                if opts.get("grid_save_to_dirs") else None,
                **script_hooks.save_callbacks(ctx.callbacks, params))
            saved.append(grid_path)
        if opts.get("return_grid"):
            images.insert(0, grid)
            infotexts.insert(0, infotexts[0])
            index_of_first_image = 1

    extra_params = dict(run.extra_params)
    if plan.scheduler_label != "Automatic":
        extra_params.setdefault("Schedule type", plan.scheduler_label)
    processed = Processed(
        images=images, prompt=plan.prompts[0], all_prompts=plan.prompts,
        negative_prompt=plan.negative_prompts[0], all_negative_prompts=plan.negative_prompts,
        seed=plan.seed, all_seeds=plan.seeds, subseed=plan.subseed, all_subseeds=plan.subseeds,
        subseed_strength=params.subseed_strength, width=plan.width, height=plan.height,
        sampler_name=plan.sampler_name, cfg_scale=params.cfg_scale, steps=params.steps,
        batch_size=params.batch_size, restore_faces=face_restorer is not None,
        face_restoration_model=face_restorer.name if face_restorer is not None else None,
        sd_model_name=Path(info.filename).stem, sd_model_hash=info.shorthash,
        sd_vae_name=vae.name, sd_vae_hash=vae.hash,
        seed_resize_from_w=params.seed_resize_from_w, seed_resize_from_h=params.seed_resize_from_h,
        denoising_strength=params.denoising_strength, extra_generation_params=extra_params,
        index_of_first_image=index_of_first_image, infotexts=infotexts, styles=plan.styles,
        job_timestamp=job_timestamp, clip_skip=clip_skip,
        is_using_inpainting_conditioning=run.is_using_inpainting_conditioning,
        version=INFOTEXT_VERSION, saved_files=saved,
        comments="\n".join(filter(None, [script_hooks.comments(params, progress),
                                         *run.networks.warnings, *run.notes])))
    script_hooks.call(params, "postprocess", processed)
    return processed
