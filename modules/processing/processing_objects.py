"""A1111's processing objects (`p`): StableDiffusionProcessingTxt2Img / Img2Img with A1111's
attribute names, which the pipeline runs from and script hooks read **and write**.

They are the request dataclasses (params.py) plus the state A1111 scripts use: `all_prompts`,
`all_negative_prompts`, `all_seeds`, `all_subseeds`, `all_hr_prompts`, `extra_generation_params`,
per-batch `prompts` / `seeds`, `iteration`, `script_args`, `scripts`, `sd_model`, `image_mask`…
The pipeline fills the `all_*` lists before the `process` hook and reads them back after it, so
a script that rewrites them changes the images and the infotext.

`process_images(p)` runs `p` in the job that is running now (a selectable script's `run()` calls
it, maybe several times, from inside its own job).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Any, Iterator

from modules.processing.params import GenerationParams, Img2ImgParams
from modules.processing.params import Processed as ProcessedResult

#: the processing context of the job running on this thread (for objects a script creates)
_running_context: contextvars.ContextVar[Any] = contextvars.ContextVar("processing_context",
                                                                        default=None)

#: A1111 constructor arguments that are not request fields here, and where they go
_ALIASES = {"image_mask": "mask"}


class StableDiffusionProcessing:
    """The state every processing object carries besides its request fields."""

    def _init_state(self, extra: dict[str, Any]) -> None:
        self.all_prompts: list[str] | None = None
        self.all_negative_prompts: list[str] | None = None
        self.all_seeds: list[int] | None = None
        self.all_subseeds: list[int] | None = None
        self.all_hr_prompts: list[str] | None = None
        self.all_hr_negative_prompts: list[str] | None = None
        self.prompts: list[str] | None = None
        self.negative_prompts: list[str] | None = None
        self.seeds: list[int] | None = None
        self.subseeds: list[int] | None = None
        self.iteration = 0
        self.extra_generation_params: dict[str, Any] = {}
        self.script_errors: list[str] = []      # messages of hooks that raised, for the result
        #: img2img: start_noise(run, batch, init_latent) → the batch's initial noise instead of
        #: the seeds' (a script that finds the noise of the image sets it)
        self.start_noise = None
        #: ours: a ControlNetPatch (modules.engine.controlnet) every sampling of this job applies
        #: to the UNet, set by the ControlNet script's process hook; None: no ControlNet
        self.control_patch = None
        #: ours: (chunk ids, features, text encoder config) → features, applied to every chunk a
        #: text tower of this job encodes, after emphasis (aesthetic gradients); append to it
        self.text_encoder_output_hooks: list = []
        self.scripts = None                     # the tab's ScriptRunner
        self.processing_context = None          # set when the job runs it
        self.user = None
        for name, value in extra.items():       # sd_model=, and what extensions pass along
            setattr(self, name, value)

    @property
    def sd_model(self) -> Any:
        context = self.processing_context or _running_context.get()
        loaded = context.model_manager.current() if context is not None else None
        return loaded.model if loaded is not None else None

    @sd_model.setter
    def sd_model(self, value: Any) -> None:
        """A1111 passes sd_model=shared.sd_model to constructors: the loaded model is used."""

    def close(self) -> None:
        """A1111 API: release what the object holds (nothing to release here)."""


def _split_kwargs(dataclass_type: type, kwargs: dict[str, Any]) -> tuple[dict, dict]:
    names = {field.name for field in dataclasses.fields(dataclass_type)}
    known, extra = {}, {}
    for name, value in kwargs.items():
        name = _ALIASES.get(name, name)
        (known if name in names else extra)[name] = value
    return known, extra


class StableDiffusionProcessingTxt2Img(GenerationParams, StableDiffusionProcessing):
    def __init__(self, **kwargs: Any) -> None:
        known, extra = _split_kwargs(GenerationParams, kwargs)
        GenerationParams.__init__(self, **known)
        self._init_state(extra)


class StableDiffusionProcessingImg2Img(Img2ImgParams, StableDiffusionProcessing):
    def __init__(self, **kwargs: Any) -> None:
        known, extra = _split_kwargs(Img2ImgParams, kwargs)
        Img2ImgParams.__init__(self, **known)
        self._init_state(extra)

    @property
    def image_mask(self) -> Any:
        return self.mask

    @image_mask.setter
    def image_mask(self, value: Any) -> None:
        self.mask = value


def processing_object(params: GenerationParams | Img2ImgParams) -> StableDiffusionProcessing:
    """`params` as a processing object (itself when it already is one)."""
    if isinstance(params, StableDiffusionProcessing):
        return params
    cls = StableDiffusionProcessingImg2Img if isinstance(params, Img2ImgParams) \
        else StableDiffusionProcessingTxt2Img
    return cls(**{field.name: getattr(params, field.name)
                  for field in dataclasses.fields(params)})


def prepare_processing_object(params: GenerationParams | Img2ImgParams, context: Any, *,
                              is_img2img: bool) -> StableDiffusionProcessing:
    """The job's `p`: its scripts (the tab's runner), their args (defaults when the request gave
    none) and the context it runs in."""
    p = processing_object(params)
    p.processing_context = context
    if getattr(context, "paths", None) is not None:
        # A1111 fills these from the settings; scripts save their grids there
        from modules.processing.pipeline import output_folder
        kind = "img2img" if is_img2img else "txt2img"
        p.outpath_samples = p.outpath_samples or str(output_folder(context.options,
                                                                   context.paths, kind))
        p.outpath_grids = p.outpath_grids or str(output_folder(context.options, context.paths,
                                                               kind, grids=True))
    if p.scripts is None:
        p.scripts = getattr(context, "scripts_for", lambda is_img2img: None)(is_img2img)
    if p.scripts is not None and not p.script_args:
        p.script_args = p.scripts.default_args()
    return p


class running_context:
    """Marks `context` as the running job's for processing objects created inside (by scripts)."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self._token = None

    def __enter__(self) -> Any:
        self._token = _running_context.set(self.context)
        return self.context

    def __exit__(self, *exc_info: Any) -> None:
        _running_context.reset(self._token)


class Processed(ProcessedResult):
    """A1111's constructor, `Processed(p, images_list, seed=-1, info="", subseed=None,
    all_prompts=None, all_negative_prompts=None, all_seeds=None, all_subseeds=None,
    index_of_first_image=0, infotexts=None, comments="")`, for scripts that assemble their own
    result from several process_images() calls; what is not given is taken from `p`."""

    def __init__(self, p: Any, images_list: list, seed: int = -1, info: str = "",
                 subseed: int | None = None, all_prompts: list | None = None,
                 all_negative_prompts: list | None = None, all_seeds: list | None = None,
                 all_subseeds: list | None = None, index_of_first_image: int = 0,
                 infotexts: list | None = None, comments: str = "",
                 extra_images_list: list | None = None) -> None:
        def first(values: Any, default: Any) -> Any:
            return values[0] if isinstance(values, (list, tuple)) and values else \
                values if values not in (None, []) else default

        prompts = all_prompts or getattr(p, "all_prompts", None) or [first(p.prompt, "")]
        negatives = all_negative_prompts or getattr(p, "all_negative_prompts", None) or \
            [first(p.negative_prompt, "")]
        seeds = all_seeds or getattr(p, "all_seeds", None) or [first(p.seed, -1)]
        subseeds = all_subseeds or getattr(p, "all_subseeds", None) or [first(p.subseed, -1)]
        super().__init__(
            images=list(images_list), prompt=prompts[0], all_prompts=list(prompts),
            negative_prompt=negatives[0], all_negative_prompts=list(negatives),
            seed=seed if seed != -1 else seeds[0], all_seeds=list(seeds),
            subseed=subseed if subseed is not None else subseeds[0], all_subseeds=list(subseeds),
            subseed_strength=p.subseed_strength, width=p.width, height=p.height,
            sampler_name=p.sampler_name or "", cfg_scale=p.cfg_scale, steps=p.steps,
            batch_size=p.batch_size, restore_faces=bool(p.restore_faces),
            face_restoration_model=None, sd_model_name=None, sd_model_hash=None,
            sd_vae_name=None, sd_vae_hash=None, seed_resize_from_w=p.seed_resize_from_w,
            seed_resize_from_h=p.seed_resize_from_h, denoising_strength=p.denoising_strength,
            extra_generation_params=dict(getattr(p, "extra_generation_params", {}) or {}),
            index_of_first_image=index_of_first_image,
            infotexts=list(infotexts) if infotexts is not None else [info] * len(images_list),
            styles=list(p.styles or []), job_timestamp="", clip_skip=1,
            is_using_inpainting_conditioning=False, version=None, comments=comments)
        self.info = info


def get_fixed_seed(seed: Any) -> int:
    """A1111: -1, None or "" becomes a random seed; anything else the seed as an int."""
    from modules.engine.noise import resolve_seed
    return resolve_seed(-1 if seed in (None, "") else seed)


def fix_seed(p: Any) -> None:
    """A1111: make p.seed and p.subseed fixed numbers (scripts that run several jobs)."""
    p.seed = get_fixed_seed(p.seed)
    p.subseed = get_fixed_seed(p.subseed)


def run_with_selected_script(params: GenerationParams | Img2ImgParams, context: Any, *,
                             is_img2img: bool, process: Any) -> ProcessedResult:
    """One txt2img / img2img job (A1111's txt2img() / img2img()): the selected script's run()
    does it when `params.script_args` chooses one, else `process(p, context)`."""
    p = prepare_processing_object(params, context, is_img2img=is_img2img)
    with running_context(context):
        processed = p.scripts.run(p, p.script_args) if p.scripts is not None else None
        return processed if processed is not None else process(p, context)


def process_images(p: StableDiffusionProcessing) -> ProcessedResult:
    """Run `p` (txt2img or img2img by its type) inside the running job: the always-on scripts'
    hooks run, the selectable script does not (A1111's process_images)."""
    context = p.processing_context or _running_context.get()
    if context is None:
        raise RuntimeError("process_images() runs inside a generation job (e.g. from a "
                           "script's run()); none is running on this thread")
    p = prepare_processing_object(p, context, is_img2img=isinstance(p, Img2ImgParams))
    admit = getattr(context, "admit", None)
    if admit is not None:       # a script's jobs are held to the server limits like requests
        admit(p)
    with _settings_overridden(context.options, p):
        if isinstance(p, Img2ImgParams):
            from modules.processing.img2img import process_img2img
            return process_img2img(p, context)
        from modules.processing.txt2img import process_txt2img
        return process_txt2img(p, context)


@contextlib.contextmanager
def _settings_overridden(options: Any, p: StableDiffusionProcessing) -> Iterator[None]:
    """A1111's process_images applies `p.override_settings` (a checkpoint, clip skip, a VAE…)
    for this call; kept afterwards when `override_settings_restore_afterwards` is False."""
    overrides = dict(p.override_settings or {})
    if not overrides:
        yield
        return
    if not p.override_settings_restore_afterwards:
        for key, value in overrides.items():
            options.set(key, value)
        yield
        return
    with options.override(overrides):
        yield
