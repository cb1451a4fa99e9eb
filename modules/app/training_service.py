"""Training work on the app's services (the loaded checkpoint, the embeddings folder, the allowed
folders, txt2img for previews), shared by the Train tab and /sdapi/v1/create|train/*. Each
function runs on the job queue's thread."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules.engine.checkpoint_io import CheckpointLoadError
from modules.engine.hypernetwork import HypernetworkError
from modules.engine.textual_inversion import read_embedding
from modules.jobs.progress import JobProgress
from modules.processing.embedding_training import (EmbeddingTrainee, EmbeddingTrainingRequest,
                                                   TrainingResult, TrainingRun, log_folder)
from modules.processing.training_loop import TrainingRequest, run_training
from modules.processing.hypernetwork_training import HypernetworkTrainee
from modules.processing.params import GenerationParams
from modules.processing.preprocess import PreprocessRequest, PreprocessResult, preprocess
from modules.processing.textual_inversion import model_encoders
from modules.processing.training_create import TrainingInputError, create_embedding

if TYPE_CHECKING:
    from modules.app.context import AppContext


def create_embedding_here(ctx: "AppContext", name: str, *, num_vectors_per_token: int = 1,
                          overwrite_old: bool = False, init_text: str = "*") -> Path:
    """A new embedding for the loaded checkpoint, listed at once."""
    loaded = ctx.model_manager.get(ctx.options.get("sd_model_checkpoint") or None)
    path = create_embedding(loaded.model, ctx.paths.embeddings_dir, name,
                            num_vectors_per_token=num_vectors_per_token,
                            overwrite_old=overwrite_old, init_text=init_text,
                            checkpoint_hash=loaded.info.shorthash,
                            checkpoint_name=loaded.info.model_name)
    if ctx.embeddings is not None:
        ctx.embeddings.refresh()
    return path


def trainable_embeddings(ctx: "AppContext") -> list[str]:
    """Names of the embeddings that fit the loaded checkpoint (all readable ones before a load)."""
    if getattr(ctx, "embeddings", None) is None:
        return []
    loaded = ctx.model_manager.current()
    if loaded is None:
        sets = ctx.embeddings.sets_for([])
        return sorted([*sets.loaded, *sets.skipped])
    return sorted(ctx.embeddings.sets_for(model_encoders(loaded.model)).loaded)


def run_embedding_training(ctx: "AppContext", request: EmbeddingTrainingRequest,
                           progress: Any) -> TrainingResult:
    """One training run on the loaded checkpoint, on the job's thread."""
    loaded = ctx.model_manager.get(ctx.options.get("sd_model_checkpoint") or None)
    if ctx.embeddings is None:
        raise TrainingInputError("embeddings are not available")
    known = ctx.embeddings.sets_for(model_encoders(loaded.model))
    found = known.loaded.get(request.embedding_name)
    if found is None or found.path is None:
        other = "it is for another model" if request.embedding_name in known.skipped else \
            "create it first"
        raise TrainingInputError(f"embedding {request.embedding_name!r} not found in "
                                 f"{ctx.paths.embeddings_dir} ({other})")
    # a fresh copy: the library's object stays as the file was
    embedding = read_embedding(found.path)
    embedding.name = found.name
    data_root, log_base = _checked_folders(ctx, request)
    trainee = EmbeddingTrainee(embedding, loaded.model, checkpoint_hash=loaded.info.shorthash,
                               checkpoint_name=loaded.info.model_name)
    run = TrainingRun(loaded.model, data_root, ctx.paths.templates_dir,
                      log_folder(log_base, embedding.name),
                      make_preview=lambda prompt, req: preview_image(ctx, prompt, req))
    try:
        return run_training(trainee, run, request, progress)
    finally:
        ctx.embeddings.refresh()


def run_hypernetwork_training(ctx: "AppContext", request: TrainingRequest,
                              progress: Any) -> TrainingResult:
    """One hypernetwork training run on the loaded checkpoint, on the job's thread; previews
    draw with the hypernetwork as last saved (`<hypernet:name:1>`)."""
    loaded = ctx.model_manager.get(ctx.options.get("sd_model_checkpoint") or None)
    path = ctx.hypernetworks.find(request.hypernetwork_name) if ctx.hypernetworks else None
    if path is None:
        raise TrainingInputError(f"hypernetwork {request.hypernetwork_name!r} not found in "
                                 f"{ctx.paths.hypernetwork_dir} (create it first)")
    data_root, log_base = _checked_folders(ctx, request, default_log="textual_inversion")
    try:
        trainee = HypernetworkTrainee(path, loaded.model, checkpoint_hash=loaded.info.shorthash,
                                      checkpoint_name=loaded.info.model_name)
    except (CheckpointLoadError, HypernetworkError) as error:
        raise TrainingInputError(f"{path.name}: {error}") from error
    tag = f" <hypernet:{path.stem}:1>"
    run = TrainingRun(loaded.model, data_root, ctx.paths.templates_dir,
                      log_folder(log_base, trainee.name),
                      make_preview=lambda prompt, req: preview_image(ctx, prompt + tag, req))
    return run_training(trainee, run, request, progress)


def _checked_folders(ctx: "AppContext", request: TrainingRequest,
                     default_log: str = "textual_inversion") -> tuple[Path, Path]:
    """(dataset folder, log folder), both inside the allowed folders."""
    try:
        data_root = ctx.paths.allowed_folder(request.data_root, "dataset folder")
        log_base = ctx.paths.allowed_folder(request.log_directory or default_log,
                                            "log directory")
    except ValueError as error:
        raise TrainingInputError(str(error)) from error
    if not data_root.is_dir():
        raise TrainingInputError(f"dataset folder {request.data_root!r} does not exist")
    return data_root, log_base


def preprocess_captioners(ctx: "AppContext") -> dict[str, Any]:
    """BLIP's caption and DeepBooru's tags, for those whose weights are installed."""
    interrogators = ctx.interrogators
    captioners: dict[str, Any] = {}
    if interrogators is None:
        return captioners
    if interrogators.blip_folder() is not None:
        captioners["BLIP"] = lambda image: interrogators.caption(image)
    if interrogators.deepbooru_file() is not None:
        captioners["DeepBooru"] = lambda image: interrogators.interrogate(image, "deepdanbooru")
    return captioners


def run_preprocess(ctx: "AppContext", source: str, destination: str,
                   request: PreprocessRequest, progress: Any) -> PreprocessResult:
    """The Train tab's preprocessing, both folders inside the allowed ones."""
    try:
        source_dir = ctx.paths.allowed_folder(source, "source folder")
        target_dir = ctx.paths.allowed_folder(destination, "destination folder")
    except ValueError as error:
        raise TrainingInputError(str(error)) from error
    if not source_dir.is_dir():
        raise TrainingInputError(f"source folder {source!r} does not exist")
    return preprocess(source_dir, target_dir, request, preprocess_captioners(ctx), progress)


def preview_image(ctx: "AppContext", prompt: str, request: EmbeddingTrainingRequest) -> Any:
    """A txt2img picture with the preview settings (the training size unless the preview is
    set from txt2img), not saved among the outputs."""
    from modules.processing.txt2img import run_txt2img
    own = request.preview_from_txt2img
    params = GenerationParams(
        prompt=prompt, negative_prompt=request.preview_negative_prompt if own else "",
        steps=request.preview_steps, sampler_name=request.preview_sampler_name,
        cfg_scale=request.preview_cfg_scale, seed=request.preview_seed,
        width=request.preview_width if own else request.training_width,
        height=request.preview_height if own else request.training_height,
        do_not_save_samples=True, do_not_save_grid=True)
    processed = run_txt2img(params, ctx.processing_context(JobProgress(job="train-preview")))
    return processed.images[0]


