"""Owns the loaded checkpoint: load on demand, switch, keep the previous model when a load fails.

One model is kept in memory by default. With A1111's `sd_checkpoints_limit` above 1, models
switched away from stay loaded (up to the limit, least recently used dropped first), so switching
back takes no load; with `sd_checkpoints_keep_in_cpu` they wait in CPU memory, off the GPU. A new
checkpoint is read and validated before the old one is released, so a corrupt file leaves the
current model usable.
"""
from __future__ import annotations

import gc
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from modules.app.checkpoints import CheckpointInfo, CheckpointRegistry, v_prediction_hint
from modules.app.devices import DevicePlan
from modules.engine.attention import use_attention
from modules.engine.checkpoint_io import CheckpointLoadError
from modules.engine.sd_model import StableDiffusionModel, load_model, load_vae_weights

log = logging.getLogger(__name__)

# Documented name hint for SD2.x v-prediction files that come without a sidecar .yaml:
# "768-v", "v-pred", "vpred", "v_prediction" in the file name.
_V_NAME_HINT = re.compile(r"(768-v|v[-_]?pred|v[-_]prediction)", re.IGNORECASE)


class NoCheckpointError(RuntimeError):
    """No checkpoint file exists (or none matches the request)."""


@dataclass
class LoadedModel:
    info: CheckpointInfo
    model: StableDiffusionModel
    vae_path: str | None = None
    offloaded: bool = False     # weights parked in CPU memory (unload_to_cpu, the cache)
    #: the attention kernel its layers use, and whether it is upcast to float32
    attention: tuple[str, bool] = ("sdp", False)


class ModelManager:
    def __init__(self, checkpoints: CheckpointRegistry, plan: DevicePlan, *, checkpoint_dir: Path,
                 allow_unsafe_pickle: bool = False,
                 force_v_prediction: Callable[[], bool] = lambda: False,
                 replan: Callable[[], DevicePlan] | None = None,
                 attention: Callable[[], str] = lambda: "sdp",
                 upcast_attention: Callable[[], bool] = lambda: False,
                 cache_limit: Callable[[], int] = lambda: 1,
                 keep_in_cpu: Callable[[], bool] = lambda: True,
                 tokenizer_dir: Path | None = None):
        self.checkpoints = checkpoints
        #: where Alt-Diffusion checkpoints find the xlm-roberta-large tokenizer
        self.tokenizer_dir = tokenizer_dir
        self.plan = plan
        #: the plan again at each load (the precision settings may have changed since)
        self.replan = replan
        self.checkpoint_dir = checkpoint_dir
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self.force_v_prediction = force_v_prediction
        #: the attention kernel for the model's layers (applied at each get())
        self.attention = attention
        self.upcast_attention = upcast_attention
        #: how many checkpoints may be loaded at once, the active one included
        self.cache_limit = cache_limit
        #: whether inactive cached models wait in CPU memory instead of on the device
        self.keep_in_cpu = keep_in_cpu
        self._loaded: LoadedModel | None = None
        #: inactive loaded models by file name, least recently used first
        self._cache: OrderedDict[str, LoadedModel] = OrderedDict()
        # (checkpoint, VAE) released by unload_to_cpu() on a CPU-only plan, for reload_to_device()
        self._released: tuple[CheckpointInfo, str | None] | None = None
        self._lock = threading.RLock()
        #: called with each newly loaded model (the extensions' on_model_loaded callbacks)
        self.on_loaded: Callable[[StableDiffusionModel], None] | None = None

    # -- queries -------------------------------------------------------------------------------
    def current(self) -> LoadedModel | None:
        return self._loaded

    def current_checkpoint(self) -> CheckpointInfo | None:
        return self._loaded.info if self._loaded else None

    def cached_checkpoints(self) -> list[CheckpointInfo]:
        """The checkpoints kept loaded besides the active one, least recently used first."""
        return [loaded.info for loaded in self._cache.values()]

    def demo_model_message(self) -> str:
        return (f"This is the small demo model (simple coloured shapes, 64×64). Put real Stable "
                f"Diffusion checkpoints (.safetensors) into {self.checkpoint_dir} and refresh "
                f"the list to use them.")

    def no_checkpoint_message(self) -> str:
        return (f"No Stable Diffusion checkpoint found. Put a .safetensors checkpoint into "
                f"{self.checkpoint_dir} (or pass --ckpt / --ckpt-dir), then refresh the list.")

    def active_checkpoint(self, wanted: str | None) -> CheckpointInfo | None:
        """The checkpoint in use for the setting `wanted`: that one when its file exists, else
        (no setting, or a file that is gone) the loaded model, or before any load the one the
        next job loads. None when there is no checkpoint at all. (After a job with a checkpoint
        override the override stays loaded until the next job, as in A1111; this names the
        setting's checkpoint, which that next job uses.)"""
        try:
            return self.resolve(wanted, warn=False)
        except NoCheckpointError:
            return None

    def resolve(self, title: str | None, *, warn: bool = True) -> CheckpointInfo:
        """The checkpoint named by `title` (any A1111 alias). None, or a title that matches nothing
        (a stale setting), gives the loaded model, else the first checkpoint on disk, as A1111 does."""
        if title:
            info = self.checkpoints.get_closest(title)
            if info is not None:
                return info
        if self._loaded is not None:
            fallback = self._loaded.info
        else:
            available = self.checkpoints.list()
            if not available:
                raise NoCheckpointError(self.no_checkpoint_message())
            # the shipped demo model only when the user has no checkpoint of their own
            fallback = next((info for info in available if not info.is_demo), available[0])
        if title and warn:
            log.warning("Checkpoint %r not found; using %s", title, fallback.title)
        return fallback

    # -- loading -------------------------------------------------------------------------------
    def get(self, title: str | None = None, *, vae_path: str | None = None) -> LoadedModel:
        """The model for `title` (loading it if needed) with `vae_path` applied (None = its own)."""
        with self._lock:
            info = self.resolve(title)
            if self._loaded is not None and self._loaded.info.filename == info.filename:
                loaded = self._loaded
            elif info.filename in self._cache:
                loaded = self._take_from_cache(info.filename)
            else:
                # no local reference to the old model here: _load releases it before loading
                loaded = self._load(info)
            self._trim_cache(self._cache_slots())          # the limit may have come down
            if loaded.offloaded:
                self._move_to_device(loaded)
            if loaded.vae_path != vae_path:
                self._apply_vae(loaded, vae_path)
            attention = (self.attention(), bool(self.upcast_attention()))
            if loaded.attention != attention:
                use_attention(loaded.model, attention[0], upcast_to_float32=attention[1])
                loaded.attention = attention
            return loaded

    def _wants_v_prediction(self, info: CheckpointInfo) -> bool | None:
        hint = v_prediction_hint(info)
        if hint is not None:
            return hint
        if self.force_v_prediction():
            return True
        if _V_NAME_HINT.search(Path(info.filename).name):
            return True
        return None

    def _load(self, info: CheckpointInfo) -> LoadedModel:
        log.info("Loading checkpoint %s", info.filename)
        previous = self._loaded
        previous_source = (previous.info, previous.vae_path) if previous is not None else None
        del previous   # no reference of ours may keep the old model alive past unload()
        # The new file's header (keys, shapes, dtypes) is checked before the previous model is
        # released, so a file that does not fit leaves it usable; then the previous model is
        # released before any new weight is read, so two models never sit in memory together.
        if self.replan is not None:
            self.plan = self.replan()
        try:
            model = load_model(info.filename, device=self.plan.device, dtype=self.plan.dtype,
                               vae_dtype=self.plan.vae_dtype,
                               v_prediction=self._wants_v_prediction(info),
                               allow_unsafe_pickle=self.allow_unsafe_pickle,
                               on_validated=self._release_for_load,
                               tokenizer_dir=self.tokenizer_dir)
        except Exception as error:
            if previous_source is None or self._loaded is not None:
                raise           # failed before the release: the previous model is still loaded
            if previous_source[0].filename in self._cache:   # parked, not released
                self._loaded = self._take_from_cache(previous_source[0].filename)
                raise
            raise self._restore_after_failed_load(info, previous_source, error) from error
        if self.plan.vae_dtype != self.plan.dtype:
            model.first_stage_model.to(self.plan.vae_dtype)
        self.checkpoints.ensure_hashed(info)
        self._loaded = LoadedModel(info=info, model=model)
        log.info("Loaded %s (%s, %s prediction) on %s", info.title, model.config.family,
                 model.prediction, self.plan.describe())
        if self.on_loaded is not None:
            self.on_loaded(model)
        return self._loaded

    def _restore_after_failed_load(self, failed: CheckpointInfo,
                                   previous: tuple[CheckpointInfo, str | None],
                                   error: Exception) -> CheckpointLoadError:
        """Loading `failed` broke after the previous model was released (the file changed or
        could not be read past its header): load the previous one again. Returns the error to
        raise, which says whether the previous model is back."""
        info, vae_path = previous
        log.error("Loading %s failed after %s was released (%s); loading %s again",
                  failed.filename, info.title, error, info.title)
        try:
            self._load(info)
            if vae_path is not None:
                self._apply_vae(self._loaded, vae_path)
            outcome = f"{info.title} was loaded again"
        except Exception as reload_error:  # noqa: BLE001 - reported in the message
            log.error("Loading %s again failed too: %s", info.title, reload_error)
            outcome = f"loading {info.title} again failed too ({reload_error}); no model is loaded"
        reason = error.reason if isinstance(error, CheckpointLoadError) else str(error)
        return CheckpointLoadError(failed.filename, f"{reason}; {outcome}")

    def _apply_vae(self, loaded: LoadedModel, vae_path: str | None) -> None:
        # None = back to the checkpoint's own VAE: its first_stage_model.* weights are a VAE source
        load_vae_weights(loaded.model, vae_path or loaded.info.filename,
                         allow_unsafe_pickle=self.allow_unsafe_pickle)
        loaded.vae_path = vae_path

    # -- the checkpoint cache (sd_checkpoints_limit) --------------------------------------------
    def _cache_slots(self) -> int:
        """How many inactive models may stay loaded besides the active one."""
        return max(0, int(self.cache_limit()) - 1)

    def _park(self, loaded: LoadedModel) -> None:
        if self.keep_in_cpu() and self.plan.device.type != "cpu" and not loaded.offloaded:
            loaded.model.to("cpu")
            loaded.offloaded = True
        self._cache[loaded.info.filename] = loaded

    def _trim_cache(self, slots: int) -> None:
        """Release the least recently used cached models beyond `slots`."""
        if len(self._cache) <= slots:
            return
        while len(self._cache) > slots:
            dropped = self._cache.popitem(last=False)[1]
            log.info("Releasing cached checkpoint %s", dropped.info.title)
            del dropped
        self._release_device_memory()

    def _take_from_cache(self, filename: str) -> LoadedModel:
        """Make the cached model of `filename` the active one; the active one takes its place
        in the cache (or is released when the limit has come down to 1)."""
        wanted = self._cache.pop(filename)
        previous, self._loaded = self._loaded, None
        if previous is not None and self._cache_slots() > 0:
            self._park(previous)
            previous = None
        self._loaded = wanted
        log.info("Switched to the cached checkpoint %s", wanted.info.title)
        if previous is not None:      # no slot for it: released
            del previous
            self._release_device_memory()
        return wanted

    def _release_for_load(self) -> None:
        """Run once a new file is validated, before its weights are read: the active model goes
        to the cache when there is a slot (else it is released), and cached models beyond the
        slots left for the new one are released."""
        with self._lock:
            if self._loaded is not None and self._cache_slots() > 0:
                self._park(self._loaded)
                self._loaded = None
            self._trim_cache(self._cache_slots())
            self.unload()

    def clear_cache(self) -> None:
        with self._lock:
            self._trim_cache(0)

    def unload(self) -> None:
        with self._lock:
            if self._loaded is None:
                return
            self._loaded = None
            self._release_device_memory()

    @staticmethod
    def _release_device_memory() -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- /sdapi/v1/unload-checkpoint and reload-checkpoint ---------------------------------------
    def unload_to_cpu(self) -> None:
        """Free the device's memory. On an accelerator the weights move to CPU memory (the next
        job or reload_to_device() moves them back); on a CPU-only plan "moving to the CPU" would
        free nothing, so the model is released and reload_to_device() reads it again. Cached
        models go to CPU memory too, or are released on a CPU-only plan."""
        with self._lock:
            if self.plan.device.type == "cpu":
                self._trim_cache(0)
            else:
                for cached in self._cache.values():
                    if not cached.offloaded:
                        cached.model.to("cpu")
                        cached.offloaded = True
            loaded = self._loaded
            if loaded is None or loaded.offloaded:
                return
            if self.plan.device.type == "cpu":
                self._released = (loaded.info, loaded.vae_path)
                self.unload()
                return
            loaded.model.to("cpu")
            loaded.offloaded = True
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def reload_to_device(self) -> LoadedModel | None:
        """Undo unload_to_cpu(); None when nothing was unloaded and no model is loaded."""
        with self._lock:
            if self._loaded is not None:
                if self._loaded.offloaded:
                    self._move_to_device(self._loaded)
                return self._loaded
            if self._released is None:
                return None
            info, vae_path = self._released
            loaded = self.get(info.title, vae_path=vae_path)
            self._released = None
            return loaded

    def _move_to_device(self, loaded: LoadedModel) -> None:
        loaded.model.to(self.plan.device)
        loaded.offloaded = False
