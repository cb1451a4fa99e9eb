"""SDXL refiner: part of the denoising runs with a second checkpoint (txt2img, img2img, hires).

How it differs from A1111: A1111 swaps the inner model inside one sampler run. Here the sampler
run is split in two engine calls over the same sigma schedule: the base model samples until the
switch point, where the exact latent x at that sigma is taken from the UNet input, and the refiner
continues from that x over the rest of the schedule (an img2img call whose start noise is zero, so
it starts exactly at x). Consequences: a multistep sampler (DPM++ 2M, LMS, …) restarts its history
at the switch, a second-order sampler's correction of the step before the switch uses the base
model, and prompt-editing schedules keep their step numbers (they are shifted for the second call).
The switch rule is A1111's: by model timestep ((999 - t) / 1000 >= switch_at, the default) or by
sampling steps (option `refiner_switch_by_sample_steps`).

Models: the model manager keeps one checkpoint (limit 1), so loading the refiner replaces the base
there. The job keeps its own reference to the base for its remaining batches and decodes with the
base VAE (SDXL base and refiner share the VAE); the next job reloads the base through the manager.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

import torch

from modules.engine.cond_types import BatchConditioning, ComposableCond, ScheduledCond
from modules.engine.denoiser import DiscreteDenoiser
from modules.engine.noise import ImageRNG
from modules.engine.sampling import SamplingInterrupted, SamplingResult, img2img_steps
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


class _RecordingModel:
    """The base model as the sampler sees it: remembers the latest UNet input (x * c_in at a
    timestep) and whether a call reached the refiner's timestep."""

    def __init__(self, model: Any, switch_at: float | None) -> None:
        self._model = model
        self._switch_at = switch_at
        self.calls = 0
        self.latest_input: torch.Tensor | None = None
        self.latest_timesteps: torch.Tensor | None = None
        self.reached_switch = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def apply_model(self, x: torch.Tensor, timesteps: torch.Tensor, crossattn: torch.Tensor,
                    vector: torch.Tensor | None = None,
                    concat: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        self.latest_input, self.latest_timesteps = x, timesteps
        timestep = round(float(timesteps.max()))
        if self._switch_at is None or (LAST_TIMESTEP - timestep) / 1000 >= self._switch_at:
            self.reached_switch = True
        return self._model.apply_model(x, timesteps, crossattn, vector=vector, concat=concat)

    def latent_at_latest_call(self, batch_size: int) -> torch.Tensor:
        """x of the images at the latest call: the denoiser fed rows x[image] * c_in(sigma); the
        last `batch_size` rows are the unconds of images 0..B-1 in order."""
        rows = self.latest_input[-batch_size:].float()
        sigmas = DiscreteDenoiser(self._model).t_to_sigma(self.latest_timesteps[-batch_size:])
        scale = (sigmas.float().to(rows.device) ** 2 + 1) ** 0.5
        return rows * scale.reshape(-1, 1, 1, 1)


class _ContinuedNoise:
    """The sampler's noise for the refiner's part: zero start noise (it starts at x exactly), and
    each image's noise stream continues where the base's part left it."""

    def __init__(self, rng: ImageRNG) -> None:
        self._rng = rng
        self.seeds = rng.seeds

    def first(self) -> torch.Tensor:
        return torch.zeros((len(self._rng.seeds), *self._rng.shape), device=self._rng.device)

    def next(self) -> torch.Tensor:
        return self._rng.next()

    def reseed(self, offset: int) -> None:
        """Already reseeded (ENSD) for the base's part: keep the stream going."""


def _shift_schedule(scheduled: ScheduledCond, offset: int) -> ScheduledCond:
    return ScheduledCond([(end - offset, cond) for end, cond in scheduled.entries])


def shift_conditioning(conditioning: BatchConditioning, offset: int) -> BatchConditioning:
    """Prompt-editing steps counted from the refiner's first call instead of the job's."""
    conds = [ComposableCond([(_shift_schedule(part, offset), weight) for part, weight in c.parts])
             for c in conditioning.conds]
    return replace(conditioning, conds=conds,
                   unconds=[_shift_schedule(u, offset) for u in conditioning.unconds])


def _schedule_layout(steps: int, engine_kwargs: dict[str, Any], fix_steps: bool) -> tuple[int, int]:
    """(schedule length, index of the first sigma) the engine uses for this call."""
    if engine_kwargs.get("init_latent") is None:
        return steps, 0
    strength = engine_kwargs.get("denoising_strength")
    schedule_steps, t_enc = img2img_steps(steps, 0.75 if strength is None else strength, fix_steps)
    schedule_steps = max(schedule_steps, 1)
    return schedule_steps, max(schedule_steps - t_enc - 1, 0)


def _strength_starting_at(schedule_steps: int, start_index: int) -> float:
    """The denoising strength whose img2img slice of a `schedule_steps` schedule starts at
    `start_index` (the engine takes int(strength * steps) steps)."""
    t_enc = schedule_steps - start_index - 1
    return (t_enc + 0.5) / schedule_steps


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
    recorder = _RecordingModel(base_model, refiner.switch_at)
    fix_steps = bool(engine_kwargs.pop("img2img_fix_steps", run.options.get("img2img_fix_steps")))
    switch_step: list[int] = []

    def base_step(step: int, total: int, latent: torch.Tensor) -> None:
        by_steps = refiner.by_sampling_steps and (
            refiner.switch_at is None or step / total >= refiner.switch_at)
        if by_steps or (not refiner.by_sampling_steps and recorder.reached_switch):
            switch_step.append(step)
            raise SamplingInterrupted()
        progress_callback(step, total, latent)

    base = run.sample_with_model(conditioning, rng, steps=steps, model=recorder,
                                 callback=base_step, img2img_fix_steps=fix_steps, **engine_kwargs)
    if not switch_step:         # finished before the switch, or the user interrupted / skipped
        return base

    done = switch_step[0]
    schedule_steps, first_index = _schedule_layout(steps, engine_kwargs, fix_steps)
    latent = recorder.latent_at_latest_call(len(rng.seeds))
    loaded = run.ctx.model_manager.get(refiner.info.title, vae_path=run.loaded.vae_path)
    model = loaded.model
    refined = run.conditioning(prompts.prompts, prompts.negative_prompts, prompts.steps,
                               width=prompts.width, height=prompts.height,
                               encoder=run.make_encoder(model), hires_steps=prompts.hires_steps)
    refined = shift_conditioning(refined, recorder.calls - 1)
    refined.image_cond = txt2img_image_conditioning(model, len(rng.seeds), prompts.width,
                                                    prompts.height)
    run.extra_params["Refiner"] = refiner.short_title
    run.extra_params["Refiner switch at"] = refiner.switch_at
    if refiner.by_sampling_steps:
        run.extra_params["Refiner switch by sampling steps"] = True

    def refiner_step(step: int, total: int, latent: torch.Tensor) -> None:
        progress_callback(done + step, done + total, latent)

    inpaint_mask = engine_kwargs.pop("inpaint_mask", None)
    original = engine_kwargs.pop("init_latent", None)
    engine_kwargs.pop("denoising_strength", None)
    result = run.sample_with_model(
        refined, _ContinuedNoise(rng), steps=schedule_steps, model=model, callback=refiner_step,
        init_latent=latent, img2img_fix_steps=False,
        denoising_strength=_strength_starting_at(schedule_steps, first_index + done),
        **engine_kwargs)
    if inpaint_mask is not None and original is not None:
        # the refiner saw the whole latent; keep the original outside the inpainting mask
        keep = 1 - inpaint_mask.to(result.latent)
        result.latent = original.to(result.latent) * keep + result.latent * (1 - keep)
    return result
