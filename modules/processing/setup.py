"""Request → per-image plan: A1111's rules for sizes, seeds, prompts and sampler names."""
from __future__ import annotations

from dataclasses import dataclass

from modules.engine.noise import resolve_seed
from modules.engine.prompt_parser import strip_prompt_comments
from modules.engine.samplers import effective_scheduler, find_sampler, get_sampler_and_scheduler
from modules.processing.context import ProcessingContext, UnsupportedRequestError
from modules.processing.params import GenerationParams


def round_to_multiple_of_8(value: int) -> int:
    """A1111 works on latents of size // 8; we round the request down the same way (min 8)."""
    return max(8, int(value) - int(value) % 8)


@dataclass
class GenerationPlan:
    """Everything decided before the first sampling step."""
    width: int
    height: int
    sampler_name: str
    scheduler_label: str          # the label actually used (e.g. "Karras" for DPM++ 2M / Automatic)
    prompts: list[str]            # per image, styles applied, comments removed (infotext text)
    negative_prompts: list[str]
    seeds: list[int]
    subseeds: list[int]
    seed: int
    subseed: int
    styles: list[str]

    @property
    def image_count(self) -> int:
        return len(self.prompts)


def reject_unsupported(params: GenerationParams) -> None:
    """Features whose issues have not landed yet get a clear error instead of a silent no-op."""
    # restore_faces is decided with the installed restorers in run_generation (face_restoration)


def plan_generation(params: GenerationParams, ctx: ProcessingContext) -> GenerationPlan:
    if params.steps < 1:
        raise UnsupportedRequestError("steps must be at least 1")
    if params.batch_size < 1 or params.n_iter < 1:
        raise UnsupportedRequestError("batch_size and n_iter must be at least 1")
    opts = ctx.options
    sampler_name, requested_scheduler = get_sampler_and_scheduler(
        params.sampler_name or params.sampler_index, params.scheduler, convert_automatic=False)
    # infotext names the schedule that actually runs ("Karras" for DPM++ 2M on Automatic)
    scheduler_label = effective_scheduler(find_sampler(sampler_name), requested_scheduler).label

    count = params.batch_size * params.n_iter
    styles = list(params.styles or [])
    prompt = ctx.styles.apply_styles_to_prompt(params.prompt or "", styles)
    negative = ctx.styles.apply_negative_styles_to_prompt(params.negative_prompt or "", styles)
    if opts.get("enable_prompt_comments"):
        prompt, negative = strip_prompt_comments(prompt), strip_prompt_comments(negative)

    seed = resolve_seed(params.seed)
    subseed = resolve_seed(params.subseed)
    vary = params.subseed_strength == 0
    seeds = [seed + (i if vary else 0) for i in range(count)]
    subseeds = [subseed + i for i in range(count)]
    return GenerationPlan(
        width=round_to_multiple_of_8(params.width), height=round_to_multiple_of_8(params.height),
        sampler_name=sampler_name, scheduler_label=scheduler_label,
        prompts=[prompt] * count, negative_prompts=[negative] * count,
        seeds=seeds, subseeds=subseeds, seed=seed, subseed=subseed, styles=styles)
