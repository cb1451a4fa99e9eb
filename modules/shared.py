"""A1111 compatibility view: `modules.shared` as extensions import it — `opts` (the settings,
with add_option), `cmd_opts` (the parsed flags), `state` (the running job), `sd_model` (the
loaded model), `OptionInfo`, `device`, `prompt_styles`, `sd_upscalers`, `latent_upscale_modes`,
`interrogator`;
and ours, `controlnet` (the built-in ControlNet's models and preprocessors).
The application binds them at start-up (bind()); our own
code never reads them: it gets what it needs passed in."""
from __future__ import annotations

from typing import Any

from modules.scripting.compat_views import (JobStateView, OptionInfo,  # noqa: F401 - re-exported
                                            options_section)

opts: Any = None
cmd_opts: Any = None
state = JobStateView()
demo = None               # the Gradio Blocks, once the UI is built
_context: Any = None


def bind(context: Any) -> None:
    """Point the names at `context` (an AppContext)."""
    global opts, cmd_opts, state, _context
    _context = context
    opts, cmd_opts = context.options, context.args
    state = JobStateView(context.jobs)


def __getattr__(name: str) -> Any:
    if name == "sd_model":
        loaded = _context.model_manager.current() if _context is not None else None
        return loaded.model if loaded is not None else None
    if name == "prompt_styles":          # .styles: name → style, as A1111's StyleDatabase
        return _context.styles if _context is not None else None
    if name == "sd_upscalers":
        return _context.upscalers.list() if _context is not None else []
    if name == "latent_upscale_modes":   # A1111: name → {"mode", "antialias"}
        from modules.processing.upscalers import latent_upscale_modes
        return {mode.name: {"mode": mode.mode, "antialias": mode.antialias}
                for mode in latent_upscale_modes()}
    if name == "interrogator":           # A1111's InterrogateModels; ours: clip_model()
        return getattr(_context, "interrogators", None)
    if name == "controlnet":             # ours: the built-in ControlNet (models, preprocessors)
        return getattr(_context, "controlnet", None)
    if name == "device":
        import torch
        return _context.model_manager.plan.device if _context is not None else \
            torch.device("cpu")
    raise AttributeError(f"module 'modules.shared' has no attribute {name!r}")
