"""The application's services, built once at start-up and passed to the API and UI explicitly."""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.app.checkpoints import CheckpointInfo, CheckpointRegistry, HashCache, VaeRegistry
from modules.app.image_index import ImageIndex
from modules.app.devices import DevicePlan, choose_attention, plan_devices
from modules.app.model_manager import ModelManager
from modules.app.option_defs import default_option_definitions
from modules.app.options import Options
from modules.app.paths import Paths
from modules.app.server_limits import ServerLimits
from modules.engine.sampling import SamplingInterrupted
from modules.jobs.progress import JobProgress
from modules.jobs.queue import Job, JobQueue
from modules.processing.context import ProcessingContext
from modules.processing.admission import check_generation, job_shape_for
from modules.processing.memory_guard import MemoryGuard, ModelFootprint
from modules.scripting.callbacks import CallbackRegistry
from modules.scripting.host import ScriptHost, find_extensions, load_script_host
from modules.processing.styles import StyleDatabase
from modules.processing.face_restoration import FaceRestorers
from modules.processing.interrogation import Interrogators
from modules.processing.ldsr_upscaler import register_ldsr
from modules.processing.model_upscalers import register_model_upscalers
from modules.processing.upscalers import UpscalerRegistry
from modules.merger.request import MergeRequest
from modules.controlnet import ControlNetService
from modules.processing.extra_networks import HypernetworkLibrary, LoraLibrary
from modules.processing.textual_inversion import EmbeddingLibrary
from modules.merger.service import CheckpointMerger, MergedCheckpoint, MergeInterrupted

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    args: argparse.Namespace
    paths: Paths
    options: Options
    checkpoints: CheckpointRegistry
    vaes: VaeRegistry
    styles: StyleDatabase
    model_manager: ModelManager
    jobs: JobQueue
    limits: ServerLimits
    memory: MemoryGuard
    upscalers: UpscalerRegistry = field(default_factory=UpscalerRegistry)
    scripts: ScriptHost = field(default_factory=lambda: ScriptHost(CallbackRegistry()))
    merger: CheckpointMerger | None = None
    controlnet: ControlNetService | None = None
    #: the API's job service when it is not this process's queue (Redis with --queue)
    job_service: Any = None
    #: the image browser's index of the outputs folder (SQLite in the data folder)
    image_index: ImageIndex | None = None
    loras: LoraLibrary | None = None
    embeddings: EmbeddingLibrary | None = None
    hypernetworks: HypernetworkLibrary | None = None
    face_restorers: FaceRestorers | None = None
    interrogators: Interrogators | None = None

    def processing_context(self, progress: JobProgress) -> ProcessingContext:
        return ProcessingContext(options=self.options, model_manager=self.model_manager,
                                 paths=self.paths, styles=self.styles, vaes=self.vaes,
                                 progress=progress, upscalers=self.upscalers, memory=self.memory,
                                 scripts_txt2img=self.scripts.txt2img,
                                 scripts_img2img=self.scripts.img2img,
                                 callbacks=self.scripts.callbacks,
                                 admit=self.admit_generation, loras=self.loras,
                                 embeddings=self.embeddings, hypernetworks=self.hypernetworks,
                                 face_restorers=self.face_restorers)

    def active_checkpoint(self) -> CheckpointInfo | None:
        """The checkpoint jobs use now: the setting's, or the loaded one when the setting names
        none or a file that is gone (before the first load: the one the next job loads)."""
        return self.model_manager.active_checkpoint(self.options.get("sd_model_checkpoint"))

    def shown_option(self, key: str) -> Any:
        """A setting as clients and the UI show it: the stored value, except that
        `sd_model_checkpoint` / `sd_checkpoint_hash` name the checkpoint in use (on a fresh
        install, after a fallback from a removed file, after a failed load). config.json keeps
        what the user chose until they choose again."""
        if key in ("sd_model_checkpoint", "sd_checkpoint_hash"):
            active = self.active_checkpoint()
            if active is not None:
                return active.title if key == "sd_model_checkpoint" else (active.sha256 or "")
        return self.options.get(key)

    def shown_options(self) -> dict[str, Any]:
        """Every setting as `shown_option` gives it (GET /sdapi/v1/options)."""
        shown = self.options.data_dict()
        for key in ("sd_model_checkpoint", "sd_checkpoint_hash"):
            if key in shown:
                shown[key] = self.shown_option(key)
        return shown

    def admit_generation(self, params: Any) -> None:
        """Refuse a txt2img / img2img request before it is queued: AdmissionError above a server
        limit (sizes of every pass, steps, batch, prompts), InsufficientMemoryError when, with a
        model loaded, the job could not fit even once the device is free (without a loaded model
        the job is checked when it starts). `params` is an API request or GenerationParams /
        Img2ImgParams (the same field names). The API answers both with 422, the UI shows them."""
        use_old_hires = bool(self.options.get("use_old_hires_fix_width_height"))
        check_generation(params, self.limits, use_old_hires_fix_width_height=use_old_hires)
        loaded = self.model_manager.current()
        if loaded is None or loaded.offloaded:
            return
        shape = job_shape_for(params, use_old_hires_fix_width_height=use_old_hires)
        self.memory.check(ModelFootprint.of(loaded.model), shape, loaded.model.device)

    def load_checkpoint(self, info: CheckpointInfo) -> None:
        """Load `info` on the job worker, after the running job (the device has one owner).
        Raises what loading raised (e.g. a CheckpointLoadError naming the file)."""
        current = self.model_manager.current_checkpoint()
        if current is not None and current.filename == info.filename:
            return
        def load(progress: JobProgress) -> None:
            # returns nothing: a finished job keeps its result, and a model kept there would
            # outlive the next switch (the leak of issue #9)
            self.model_manager.get(info.title)

        self.jobs.run("load_model", load)

    def submit_merge(self, request: MergeRequest) -> Job:
        """Queue a merge on the job worker, after the running job: progress per tensor (the
        job's step / total), interruptible (MergeInterrupted; nothing is written). The new
        checkpoint is listed once the job has finished."""
        merger = self.merger

        def merge(progress: JobProgress) -> MergedCheckpoint:
            progress.begin(1)

            def on_tensor(done: int, total: int, key: str) -> None:
                progress.on_sampling_step(done, total)   # raises when interrupted

            try:
                return merger.merge(request, callback=on_tensor, on_stage=progress.set_textinfo)
            except SamplingInterrupted as stop:
                raise MergeInterrupted("the merge was interrupted; no checkpoint was written") \
                    from stop

        return self.jobs.submit("merge", merge)

    def merge_checkpoints(self, request: MergeRequest) -> MergedCheckpoint:
        """`submit_merge` and wait for the new checkpoint."""
        return self.submit_merge(request).wait()

    def close(self) -> None:
        self.jobs.shutdown()
        if self.image_index is not None:
            self.image_index.close()
        if self.job_service is not None:
            self.job_service.close()


def build_model_registries(args: argparse.Namespace,
                           paths: Paths) -> tuple[CheckpointRegistry, VaeRegistry]:
    """The checkpoint and VAE lists of the flags' folders, scanned (the app and the merger's
    command line share them)."""
    checkpoints = CheckpointRegistry(
        paths.ckpt_dir,
        extra_dirs=[paths.extra_ckpt_dir] if paths.extra_ckpt_dir else [],
        extra_files=[paths.ckpt_file] if paths.ckpt_file else [],
        hash_cache=HashCache(paths.cache_file),
        no_hashing=bool(getattr(args, "no_hashing", False)))
    checkpoints.refresh()
    vaes = VaeRegistry(paths.vae_dir, extra_dirs=[paths.ckpt_dir])
    vaes.refresh()
    return checkpoints, vaes


def build_merger(args: argparse.Namespace, paths: Paths, checkpoints: CheckpointRegistry,
                 vaes: VaeRegistry) -> CheckpointMerger:
    """Merged checkpoints go where A1111 puts them: --ckpt-dir, else models/Stable-diffusion."""
    return CheckpointMerger(checkpoints, vaes, paths.extra_ckpt_dir or paths.ckpt_dir,
                            allow_unsafe_pickle=bool(getattr(args, "disable_safe_unpickle",
                                                             False)))


def build_app_context(args: argparse.Namespace, root: Path) -> AppContext:
    paths = Paths.from_args(args, root)
    options = Options(default_option_definitions(), paths.config_file,
                      frozen=bool(getattr(args, "freeze_settings", False)))
    options.load()
    checkpoints, vaes = build_model_registries(args, paths)
    styles = StyleDatabase(paths.styles_files)
    def device_plan() -> DevicePlan:
        return plan_devices(args, cpu_precision=str(options.get("cpu_precision")),
                            cpu_vae_precision=str(options.get("cpu_vae_precision")))

    manager = ModelManager(checkpoints, device_plan(), checkpoint_dir=paths.ckpt_dir,
                           replan=device_plan,
                           attention=lambda: choose_attention(
                               str(options.get("cross_attention_optimization")), args),
                           upcast_attention=lambda: bool(options.get("upcast_attn")),
                           cache_limit=lambda: int(options.get("sd_checkpoints_limit")),
                           keep_in_cpu=lambda: bool(options.get("sd_checkpoints_keep_in_cpu")),
                           allow_unsafe_pickle=bool(getattr(args, "disable_safe_unpickle", False)),
                           force_v_prediction=lambda: bool(options.get("sd_v_prediction")),
                           tokenizer_dir=paths.xlmr_tokenizer_dir)
    limits = ServerLimits(options, args)
    jobs = JobQueue(max_waiting=lambda: int(limits.value("limit_queue_size")),
                    time_limit=lambda: limits.value("limit_job_seconds"))
    context = AppContext(args=args, paths=paths, options=options, checkpoints=checkpoints,
                         vaes=vaes, styles=styles, model_manager=manager, jobs=jobs,
                         limits=limits,
                         memory=MemoryGuard(reserve_bytes=limits.memory_reserve_bytes))
    context.merger = build_merger(args, paths, checkpoints, vaes)
    unsafe_pickles = bool(getattr(args, "disable_safe_unpickle", False))
    context.loras = LoraLibrary([paths.lora_dir], allow_unsafe_pickle=unsafe_pickles)
    register_model_upscalers(context.upscalers, paths.upscaler_dirs, options,
                             device=manager.plan.device, dtype=manager.plan.auxiliary_dtype,
                             allow_unsafe_pickle=unsafe_pickles)
    register_ldsr(context.upscalers, paths.ldsr_dir, options, device=manager.plan.device,
                  dtype=manager.plan.auxiliary_dtype, allow_unsafe_pickle=unsafe_pickles)
    context.face_restorers = FaceRestorers(paths.face_restorer_dirs, device=manager.plan.device,
                                           dtype=manager.plan.auxiliary_dtype,
                                           allow_unsafe_pickle=unsafe_pickles)
    context.interrogators = Interrogators(
        blip_dir=paths.blip_dir, clip_dir=paths.clip_interrogate_dir,
        categories_dir=paths.interrogate_dir, deepbooru_dir=paths.deepbooru_dir,
        options=options, device=manager.plan.device, dtype=manager.plan.auxiliary_dtype,
        allow_unsafe_pickle=unsafe_pickles)
    context.hypernetworks = HypernetworkLibrary([paths.hypernetwork_dir],
                                                allow_unsafe_pickle=unsafe_pickles)
    context.embeddings = EmbeddingLibrary([paths.embeddings_dir],
                                          allow_unsafe_pickle=unsafe_pickles)
    context.controlnet = ControlNetService.for_folders(
        [paths.controlnet_dir, *([paths.extra_controlnet_dir] if paths.extra_controlnet_dir
                                 else [])],
        annotators_dir=paths.controlnet_annotators_dir,
        allow_unsafe_pickle=bool(getattr(args, "disable_safe_unpickle", False)),
        unit_count=int(options.get("control_net_unit_count")),
        ensure_room=lambda needed, what: context.memory.require(needed, what,
                                                                manager.plan.device))
    context.scripts = load_app_scripts(context)
    manager.on_loaded = lambda model: context.scripts.callbacks.run("model_loaded", model)
    context.image_index = ImageIndex(paths.data_dir / "image-index.sqlite3", paths.outputs_dir)
    context.scripts.callbacks.add("image_saved", lambda params: index_saved_image(
        context.image_index, params.filename), name="image browser index")
    return context


def index_saved_image(index: ImageIndex | None, filename: str) -> None:
    """A picture the app has just saved joins the image browser's index (files outside the
    outputs folder are not browsed)."""
    if index is None:
        return
    try:
        index.add(filename)
    except (ValueError, OSError) as error:
        log.debug("not indexed: %s (%s)", filename, error)


def extension_loading_mode(args: argparse.Namespace, options: Options) -> str:
    """"all", "extra" (only built-in extensions load) or "none" (every enabled one loads)."""
    if getattr(args, "disable_all_extensions", False):
        return "all"
    if getattr(args, "disable_extra_extensions", False):
        return "extra"
    return str(options.get("disable_all_extensions") or "none")


def load_app_scripts(context: AppContext) -> ScriptHost:
    """The compat views extensions import are pointed at this app (modules.shared,
    modules.script_callbacks, modules.scripts.basedir), then the scripts load and their
    on_ui_settings callbacks add their settings (in UI and API-only mode alike)."""
    from modules import script_callbacks, scripts as compat_scripts, shared
    callbacks = CallbackRegistry()
    script_callbacks.use_registry(callbacks)
    shared.bind(context)
    extensions = find_extensions(
        context.paths.extensions_dir, context.paths.builtin_extensions_dir,
        disabled=context.options.get("disabled_extensions") or [],
        disable=extension_loading_mode(context.args, context.options))
    host = load_script_host(context.paths.root / "scripts", extensions, callbacks,
                            on_basedir=compat_scripts.set_current_basedir)
    # stored values of the settings added here were kept when config.json was read
    callbacks.run("ui_settings")
    return host
