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

    # a script may give one prompt (or seed) per image as a list (A1111's p.prompt = [...]);
    # then the list's length is the image count
    prompt_list = params.prompt if isinstance(params.prompt, (list, tuple)) else None
    negative_list = params.negative_prompt \
        if isinstance(params.negative_prompt, (list, tuple)) else None
    count = len(prompt_list) if prompt_list is not None else \
        len(negative_list) if negative_list is not None else params.batch_size * params.n_iter
    if count < 1:
        raise UnsupportedRequestError("the prompt list is empty")
    raw_prompts = list(prompt_list) if prompt_list is not None else [params.prompt or ""] * count
    raw_negatives = list(negative_list) if negative_list is not None \
        else [params.negative_prompt or ""] * count
    if len(raw_negatives) != count:
        raise UnsupportedRequestError(f"{len(raw_negatives)} negative prompts for {count} "
                                      f"prompts")
    styles = list(params.styles or [])
    strip = strip_prompt_comments if opts.get("enable_prompt_comments") else str
    styled: dict[tuple[str, bool], str] = {}

    def style(text: str, negative: bool) -> str:
        key = (text or "", negative)
        if key not in styled:
            apply = ctx.styles.apply_negative_styles_to_prompt if negative \
                else ctx.styles.apply_styles_to_prompt
            styled[key] = strip(apply(text or "", styles))
        return styled[key]

    seeds = _per_image_seeds(params.seed, count, vary=params.subseed_strength == 0, name="seed")
    subseeds = _per_image_seeds(params.subseed, count, vary=True, name="subseed")
    return GenerationPlan(
        width=round_to_multiple_of_8(params.width), height=round_to_multiple_of_8(params.height),
        sampler_name=sampler_name, scheduler_label=scheduler_label,
        prompts=[style(text, False) for text in raw_prompts],
        negative_prompts=[style(text, True) for text in raw_negatives],
        seeds=seeds, subseeds=subseeds, seed=seeds[0], subseed=subseeds[0], styles=styles)


def _per_image_seeds(value, count: int, *, vary: bool, name: str) -> list[int]:
    """A seed (-1 = random) → consecutive seeds per image (the same one when `vary` is off);
    a list (from a script) → one per image as given."""
    if isinstance(value, (list, tuple)):
        if len(value) < count:
            raise UnsupportedRequestError(f"{len(value)} {name}s for {count} images")
        return [resolve_seed(item) for item in value[:count]]
    first = resolve_seed(value)
    return [first + (index if vary else 0) for index in range(count)]
