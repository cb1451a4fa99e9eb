"""SDXL refiner: part of the denoising runs with a second checkpoint (txt2img, img2img, hires).

How it differs from A1111: A1111 swaps the inner model inside one sampler run. Here the engine run
is split in two over the same sigma schedule: the base model samples until the switch point
(`stop_at`), and the refiner continues from the latent at that sigma (`resume_from`), with each
image's noise stream going on. Consequences: a multistep sampler (DPM++ 2M, LMS, …) restarts its
history at the switch, and prompt-editing schedules keep their step numbers (the refiner's are
shifted by the base's model calls). The switch rule is A1111's: by model timestep
((999 - t) / 1000 >= switch_at, the default) or by sampling steps (option
`refiner_switch_by_sample_steps`).

Models: the model manager keeps one checkpoint (limit 1), so loading the refiner replaces the base
there. The job keeps its own reference to the base for its remaining batches and decodes with the
base VAE (SDXL base and refiner share the VAE); the next job reloads the base through the manager.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

import torch

from modules.engine.cond_types import BatchConditioning, ComposableCond, ScheduledCond
from modules.engine.noise import ImageRNG
from modules.engine.sampling import SamplingResult
from modules.processing.context import UnsupportedRequestError
from modules.processing.image_conditioning import txt2img_image_conditioning

if TYPE_CHECKING:
    from modules.app.checkpoints import CheckpointInfo
    from modules.app.model_manager import ModelManager
    from modules.processing.params import ProcessingParams
    from modules.processing.pipeline import PipelineRun

REFINER_OFF = (None, "", "None", "none")
LAST_TIMESTEP = 999


@dataclass(frozen=True)
class RefinerRequest:
    info: "CheckpointInfo"
    #: fraction of the denoising done by the base; None switches at the first step (as A1111)
    switch_at: float | None
    by_sampling_steps: bool = False

    @property
    def short_title(self) -> str:
        """A1111's `short_title`: "<file stem> [<shorthash>]" (infotext `Refiner`)."""
        return f"{self.info.stem} [{self.info.shorthash}]" if self.info.shorthash else self.info.stem


@dataclass(frozen=True)
class RefinerPrompts:
    """What the refiner's own conditioning is encoded from."""
    prompts: list[str]
    negative_prompts: list[str]
    width: int
    height: int
    steps: int
    hires_steps: int | None = None


def resolve_refiner(params: "ProcessingParams", model_manager: "ModelManager",
                    by_sampling_steps: bool) -> RefinerRequest | None:
    """The refiner of a request; None when off. An unknown name is a 4xx error naming it."""
    name = params.refiner_checkpoint
    if name in REFINER_OFF:
        return None
    info = model_manager.checkpoints.get_closest(str(name))
    if info is None:
        raise UnsupportedRequestError(f"Could not find refiner checkpoint with name {name}")
    switch_at = params.refiner_switch_at
    if switch_at is not None and not 0.0 <= float(switch_at) <= 1.0:
        raise UnsupportedRequestError(f"refiner_switch_at must be within [0, 1], got {switch_at}")
    return RefinerRequest(info=info, switch_at=None if switch_at is None else float(switch_at),
                          by_sampling_steps=by_sampling_steps)


def _shift_schedule(scheduled: ScheduledCond, offset: int) -> ScheduledCond:
    return ScheduledCond([(end - offset, cond) for end, cond in scheduled.entries])


def shift_conditioning(conditioning: BatchConditioning, offset: int) -> BatchConditioning:
    """Prompt-editing steps counted from the refiner's first call instead of the job's."""
    conds = [ComposableCond([(_shift_schedule(part, offset), weight) for part, weight in c.parts])
             for c in conditioning.conds]
    return replace(conditioning, conds=conds,
                   unconds=[_shift_schedule(u, offset) for u in conditioning.unconds])


def _switch_rule(refiner: RefinerRequest) -> Callable[[int, int, float], bool]:
    """Where the refiner takes over: None switches at once; else A1111's rule by timestep or by
    sampling steps."""
    def switch(step: int, total: int, timestep: float) -> bool:
        if refiner.switch_at is None:
            return True
        if refiner.by_sampling_steps:
            return step / total >= refiner.switch_at
        return (LAST_TIMESTEP - timestep) / 1000 >= refiner.switch_at
    return switch


def sample_with_refiner(run: "PipelineRun", refiner: RefinerRequest,
                        conditioning: BatchConditioning, rng: ImageRNG, *, steps: int,
                        prompts: RefinerPrompts, callback: Callable | None = None,
                        **engine_kwargs: Any) -> SamplingResult:
    """Sample one batch with the base until the switch, then with the refiner."""
    if engine_kwargs.get("model") is None and refiner.info.filename == run.loaded.info.filename:
        # A1111: a refiner that is the loaded checkpoint is no switch at all
        return run.sample_with_model(conditioning, rng, steps=steps, callback=callback,
                                     **engine_kwargs)
    progress_callback = callback or run.progress.on_sampler_step
    base_model = engine_kwargs.pop("model", None) or run.model
    base = run.sample_with_model(conditioning, rng, steps=steps, model=base_model,
                                 callback=progress_callback, stop_at=_switch_rule(refiner),
                                 **engine_kwargs)
    if base.stopped_at is None:
        return base           # finished before the switch, or the user interrupted / skipped

    done = base.stopped_at
    loaded = run.ctx.model_manager.get(refiner.info.title, vae_path=run.loaded.vae_path)
    model = loaded.model
    refined = run.conditioning(prompts.prompts, prompts.negative_prompts, prompts.steps,
                               width=prompts.width, height=prompts.height,
                               encoder=run.make_encoder(model), hires_steps=prompts.hires_steps)
    refined = shift_conditioning(refined, base.denoiser_calls)
    refined.image_cond = txt2img_image_conditioning(model, len(rng.seeds), prompts.width,
                                                    prompts.height)
    run.extra_params["Refiner"] = refiner.short_title
    run.extra_params["Refiner switch at"] = refiner.switch_at
    if refiner.by_sampling_steps:
        run.extra_params["Refiner switch by sampling steps"] = True

    def refiner_step(step: int, total: int, latent: torch.Tensor) -> None:
        progress_callback(done + step, done + total, latent)

    return run.sample_with_model(refined, rng, steps=steps, model=model, callback=refiner_step,
                                 resume_from=(done, base.latent), **engine_kwargs)
