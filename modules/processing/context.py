"""What processing needs from the application, passed in explicitly (no globals)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from modules.processing.memory_guard import MemoryGuard

if TYPE_CHECKING:
    from modules.app.checkpoints import VaeRegistry
    from modules.app.model_manager import ModelManager
    from modules.app.options import Options
    from modules.app.paths import Paths
    from modules.jobs.progress import JobProgress
    from modules.processing.styles import StyleDatabase
    from modules.processing.upscalers import UpscalerRegistry


class UnsupportedRequestError(ValueError):
    """A request asks for something this build cannot do (yet): the API answers 4xx with it."""


@dataclass
class ProcessingContext:
    options: "Options"
    model_manager: "ModelManager"
    paths: "Paths"
    styles: "StyleDatabase"
    vaes: "VaeRegistry | None"
    progress: "JobProgress | Any"
    upscalers: "UpscalerRegistry | None" = None   # None = the built-in ones
    #: estimates, refuses what cannot fit, and runs the VAE within the free memory
    memory: MemoryGuard = field(default_factory=MemoryGuard)
    #: the txt2img and img2img tabs' scripts (modules.scripting.runner.ScriptRunner) or None
    scripts_txt2img: Any = None
    scripts_img2img: Any = None
    #: the extensions' callbacks (modules.scripting.callbacks.CallbackRegistry) or None
    callbacks: Any = None
    #: admit(p) raises when p is above the server limits (for the jobs scripts run), or None
    admit: Callable[[Any], None] | None = None
    #: the LoRA files (modules.processing.extra_networks.LoraLibrary), or None: tags ignored
    loras: Any = None
    #: models/hypernetworks (modules.processing.extra_networks.HypernetworkLibrary) or None
    hypernetworks: Any = None
    #: the embeddings/ folder (modules.processing.textual_inversion.EmbeddingLibrary) or None
    embeddings: Any = None
    #: CodeFormer / GFPGAN (modules.processing.face_restoration.FaceRestorers); None: the
    #: default folders under models/
    face_restorers: Any = None

    def scripts_for(self, is_img2img: bool) -> Any:
        return self.scripts_img2img if is_img2img else self.scripts_txt2img
