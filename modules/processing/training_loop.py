"""The training loop both Train-tab trainings share (textual inversion and hypernetworks): A1111's
request fields, the dataset (any image mode, captions from `.txt` files or file names), prompt
templates with `[name]` / `[filewords]`, the learning-rate schedule, gradient accumulation, saves
with the optimizer state beside the file (a later run resumes from the saved step), previews, and
interrupts (at the next step; the file keeps its last save).

What is trained is a `Trainee`: its parameters' optimizer, how prompts are encoded for it, the
patch it needs while the UNet runs, and how it writes its file.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Protocol

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from modules.engine.embedding_training import RateSchedule, diffusion_loss
from modules.engine.sampling import SamplingInterrupted
from modules.processing.training_create import TrainingInputError, file_name

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SAMPLING_METHODS = ("once", "deterministic", "random")
OPTIMIZER_SUFFIX = ".optim"
MAX_SIDE = 2048
MAX_IMAGES_PER_STEP = 64
MAX_PREVIEW_STEPS = 150


@dataclass
class TrainingRequest:
    """/sdapi/v1/train/embedding's and /train/hypernetwork's fields (a1111-compat.md §4.6),
    A1111's defaults (a hypernetwork's learning rate defaults to 0.00001 there)."""
    embedding_name: str = ""
    hypernetwork_name: str = ""
    learn_rate: str = "0.005"
    batch_size: int = 1
    gradient_step: int = 1
    data_root: str = ""
    log_directory: str = "textual_inversion"
    training_width: int = 512
    training_height: int = 512
    varsize: bool = False
    steps: int = 100000
    clip_grad_mode: str = "disabled"
    clip_grad_value: str = "0.1"
    shuffle_tags: bool = False
    tag_drop_out: float = 0.0
    latent_sampling_method: str = "once"
    use_weight: bool = False
    create_image_every: int = 500
    save_embedding_every: int = 500
    template_filename: str = "style_filewords.txt"
    save_image_with_stored_embedding: bool = True
    preview_from_txt2img: bool = False
    preview_prompt: str = ""
    preview_negative_prompt: str = ""
    preview_steps: int = 20
    preview_sampler_name: str = "Euler a"
    preview_cfg_scale: float = 7.0
    preview_seed: int = -1
    preview_width: int = 512
    preview_height: int = 512
    #: ours: seeds the timesteps, noise, order and tag shuffling, so a run repeats
    seed: int = 0

    @classmethod
    def from_api(cls, values: dict[str, Any]) -> "TrainingRequest":
        """The known fields of an API body, coerced to their types (unknown ones ignored)."""
        known = {item.name: item for item in dataclasses.fields(cls)}
        request = cls()
        for key, value in values.items():
            if key not in known or value is None:
                continue
            kind = type(getattr(request, key))
            try:
                coerced = (str(value).lower() in ("1", "true", "yes", "on")) if kind is bool \
                    and isinstance(value, str) else kind(value)
            except (TypeError, ValueError) as error:
                raise TrainingInputError(f"{key}: {value!r} is not a {kind.__name__}") from error
            setattr(request, key, coerced)
        return request


@dataclass
class TrainingSample:
    caption: str
    moments: torch.Tensor                 # [1, 2 * C, h, w] the latent distribution
    latent: torch.Tensor | None = None    # "once" / "deterministic": fixed for the run


@dataclass
class TrainingResult:
    path: Path
    step: int
    last_saved_step: int
    losses: list[float] = field(default_factory=list)
    previews: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False


def read_image(path: Path) -> Image.Image:
    """An RGB image from any mode PIL opens (16-bit greyscale scaled to 8 bits, alpha dropped)."""
    with Image.open(path) as image:
        image.load()
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.float64)
            peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
            image = Image.fromarray((array / peak * 255).clip(0, 255).astype(np.uint8), "L")
        return image.convert("RGB")


def caption_of(path: Path) -> str:
    """The image's `.txt` beside it, else the words of its file name."""
    text = path.with_suffix(".txt")
    if text.is_file():
        return text.read_text(encoding="utf-8", errors="replace").strip()
    return file_words(path)


def file_words(path: Path) -> str:
    """A file name as a caption: a leading "00012-" and underscores dropped (A1111's file
    words)."""
    stem = path.stem
    head, dash, rest = stem.partition("-")
    if dash and head.isdigit():
        stem = rest
    return stem.replace("_", " ").strip()


def read_templates(folder: Path, name: str) -> list[str]:
    if Path(name).name != name or not name.endswith(".txt"):
        raise TrainingInputError(f"template {name!r}: give the name of a .txt file in {folder}")
    path = Path(folder) / name
    if not path.is_file():
        choices = sorted(p.name for p in Path(folder).glob("*.txt"))
        raise TrainingInputError(f"template {name!r} not found in {folder} "
                                 f"(there: {', '.join(choices) or 'none'})")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise TrainingInputError(f"template {name!r} has no lines")
    return lines


def load_dataset(folder: Path, model: Any, request: TrainingRequest
                 ) -> tuple[list[TrainingSample], list[str]]:
    """Each readable image, resized and encoded once, with its caption; unreadable files are
    listed with the reason and left out."""
    samples, skipped = [], []
    vae = model.first_stage_model
    dtype = next(vae.parameters()).dtype
    generator = torch.Generator().manual_seed(request.seed)
    files = sorted(p for p in Path(folder).iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    for path in files:
        try:
            image = read_image(path)
        except (UnidentifiedImageError, OSError, ValueError) as error:
            skipped.append(f"{path.name}: {error}")
            continue
        if request.varsize:
            size = (max(64, image.width // 8 * 8), max(64, image.height // 8 * 8))
        else:
            size = (request.training_width, request.training_height)
        image = image.resize(size, Image.Resampling.BICUBIC)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
        pixels = pixels.permute(2, 0, 1).unsqueeze(0).to(model.device, dtype)
        with torch.no_grad():
            moments = vae.encode_moments(pixels).float().cpu()
        sample = TrainingSample(caption_of(path), moments)
        if request.latent_sampling_method == "once":
            sample.latent = vae.sample_latents(moments, generator)
        elif request.latent_sampling_method == "deterministic":
            sample.latent = vae.sample_latents(moments, None)
        samples.append(sample)
    if not samples:
        found = f"{len(files)} image file(s), none readable" if files else "no image files"
        raise TrainingInputError(f"no training images in {folder} ({found})")
    return samples, skipped


def filewords(caption: str, request: TrainingRequest, rng: random.Random) -> str:
    tags = [tag.strip() for tag in caption.split(",") if tag.strip()]
    if request.shuffle_tags:
        rng.shuffle(tags)
    if request.tag_drop_out > 0:
        tags = [tag for tag in tags if rng.random() >= request.tag_drop_out]
    return ", ".join(tags)


def check_request(request: TrainingRequest) -> None:
    if request.latent_sampling_method not in SAMPLING_METHODS:
        raise TrainingInputError(f"latent sampling method must be one of "
                                 f"{', '.join(SAMPLING_METHODS)}")
    if request.batch_size < 1 or request.gradient_step < 1 or request.steps < 1:
        raise TrainingInputError("batch size, gradient accumulation steps and steps must be "
                                 "at least 1")
    if request.varsize and request.batch_size != 1:
        raise TrainingInputError("variable size training needs a batch size of 1")
    if not request.varsize and (request.training_width % 8 or request.training_height % 8
                                or min(request.training_width, request.training_height) < 64):
        raise TrainingInputError("width and height must be multiples of 8, at least 64")
    if not 0 <= request.tag_drop_out < 1:
        raise TrainingInputError("tag dropout must be from 0 to below 1")
    # what one step or preview may ask of the machine
    if max(request.training_width, request.training_height, request.preview_width,
           request.preview_height) > MAX_SIDE or request.batch_size * request.gradient_step > \
            MAX_IMAGES_PER_STEP or not 1 <= request.preview_steps <= MAX_PREVIEW_STEPS:
        raise TrainingInputError(f"sides up to {MAX_SIDE} px, batch size x gradient "
                                 f"accumulation up to {MAX_IMAGES_PER_STEP}, preview steps "
                                 f"1 to {MAX_PREVIEW_STEPS}")




class Trainee(Protocol):
    """What a run trains (an embedding's vectors, a hypernetwork's MLPs)."""
    name: str
    path: Path
    start_step: int
    kind: str                      # "embeddings" / "hypernetworks": the log folder's copies

    def make_optimizer(self, rate: float, state: dict | None, *, clip_mode: str,
                       clip_value: float) -> Any: ...
    def encode(self, texts: list[str], width: int, height: int) -> tuple[torch.Tensor,
                                                                        torch.Tensor | None]: ...
    def active(self) -> ContextManager[Any]: ...
    def save(self, step: int, target: Path) -> None: ...


@dataclass
class TrainingRun:
    """A run's surroundings: the model, the folders (already checked against the allowed ones)
    and how a preview picture is made from a prompt with the trainee as last saved."""
    model: Any
    data_root: Path
    templates_dir: Path
    log_dir: Path                          # <log directory>/<date>/<name>
    make_preview: Callable[[str, TrainingRequest], Image.Image] | None = None


def run_training(trainee: Trainee, run: TrainingRun, request: TrainingRequest,
                 progress: Any) -> TrainingResult:
    check_request(request)
    model = run.model
    templates = read_templates(run.templates_dir, request.template_filename)
    start = trainee.start_step
    try:
        schedule = RateSchedule.parse(request.learn_rate, request.steps)
        clip_value = float(request.clip_grad_value or 0.1)
    except ValueError as error:
        raise TrainingInputError(str(error)) from error
    if start >= schedule.end:
        raise TrainingInputError(f"{trainee.name} is already trained to step {start}; "
                                 f"raise the steps above it to train on")
    samples, skipped = load_dataset(run.data_root, model, request)
    optim_path = trainee.path.with_name(trainee.path.name + OPTIMIZER_SUFFIX)
    try:
        optimizer = trainee.make_optimizer(schedule.rate_at(start) or 0.0,
                                           _saved_optimizer_state(optim_path, start),
                                           clip_mode=request.clip_grad_mode,
                                           clip_value=clip_value)
    except ValueError as error:
        raise TrainingInputError(str(error)) from error
    rng = random.Random(request.seed + start)
    generator = torch.Generator().manual_seed(request.seed + start)
    result = TrainingResult(trainee.path, start, start, skipped=skipped)

    def save(step: int) -> None:
        trainee.save(step, trainee.path)
        torch.save({"optimizer_name": "AdamW", "step": step,
                    "optimizer_state_dict": optimizer.state_dict()}, optim_path)
        copies = run.log_dir / trainee.kind
        copies.mkdir(parents=True, exist_ok=True)
        trainee.save(step, copies / f"{trainee.name}-{step}{trainee.path.suffix}")
        result.last_saved_step = step

    order: list[int] = []
    total = schedule.end - start
    progress.begin(1)
    step = start
    try:
        while step < schedule.end:
            optimizer.set_rate(schedule.rate_at(step) or 0.0)
            step_loss = 0.0
            with trainee.active():
                for _ in range(request.gradient_step):
                    batch = []
                    for _ in range(request.batch_size):
                        if not order:
                            order = list(range(len(samples)))
                            rng.shuffle(order)
                        batch.append(samples[order.pop()])
                    latents = torch.cat([_latent_of(sample, model, generator)
                                         for sample in batch])
                    texts = [rng.choice(templates).replace("[name]", trainee.name)
                             .replace("[filewords]", filewords(sample.caption, request, rng))
                             for sample in batch]
                    crossattn, vector = trainee.encode(texts, latents.shape[-1] * 8,
                                                       latents.shape[-2] * 8)
                    loss = diffusion_loss(model, latents.to(model.device), crossattn, vector,
                                          generator)
                    (loss / request.gradient_step).backward()
                    step_loss += loss.item() / request.gradient_step
            optimizer.step()
            step += 1
            result.losses.append(step_loss)
            result.step = step
            progress.set_textinfo(f"Training {trainee.name}: step {step}, "
                                  f"loss {step_loss:.5f}")
            if request.save_embedding_every > 0 and step % request.save_embedding_every == 0:
                save(step)
            if run.make_preview is not None and request.create_image_every > 0 and \
                    step % request.create_image_every == 0:
                _preview(run, trainee, request, save, step, templates, result, progress)
            progress.on_sampling_step(step - start, total)   # raises when interrupted
    except SamplingInterrupted:
        result.interrupted = True
        log.info("training of %s interrupted at step %d (last saved: %d)", trainee.name,
                 result.step, result.last_saved_step)
        return result
    save(step)
    return result


def encode_texts(encoder: Any, texts: list[str], width: int,
                 height: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(crossattn, SDXL's vector or None) of training prompts, autograd on."""
    crossattn, pooled = encoder.encode_for_training(texts)
    if pooled is None:
        return crossattn, None
    return crossattn, torch.stack([encoder.make_vector(p, width=width, height=height)
                                   for p in pooled])


def _latent_of(sample: TrainingSample, model: Any, generator: torch.Generator) -> torch.Tensor:
    if sample.latent is not None:
        return sample.latent
    return model.first_stage_model.sample_latents(sample.moments, generator)


def _saved_optimizer_state(path: Path, step: int) -> dict | None:
    """The optimizer state saved with the embedding at `step` (None when absent or older)."""
    if step <= 0 or not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a damaged state only restarts the moments
        log.warning("optimizer state %s not read (%s): starting it afresh", path, error)
        return None
    if not isinstance(saved, dict) or saved.get("step") != step:
        return None
    return saved.get("optimizer_state_dict")


def _preview(run: TrainingRun, trainee: Trainee, request: TrainingRequest,
             save: Callable[[int], None], step: int, templates: list[str],
             result: TrainingResult, progress: Any) -> None:
    save(step)    # the preview draws with the trainee as it is now
    prompt = request.preview_prompt if request.preview_from_txt2img else \
        templates[0].replace("[name]", trainee.name).replace("[filewords]", "")
    assert run.make_preview is not None
    image = run.make_preview(prompt, request)
    folder = run.log_dir / "images"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{trainee.name}-{step}.png"
    image.save(target)
    result.previews.append(target)
    progress.set_current_image(image)


def log_folder(base: Path, name: str) -> Path:
    """<log directory>/<YYYY-MM-DD>/<name>: the run's saved copies and preview images."""
    return Path(base) / datetime.date.today().isoformat() / file_name(name)
