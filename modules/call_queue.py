"""A1111 compatibility view: `modules.call_queue` — extensions wrap their UI handlers with
`wrap_gradio_gpu_call` so work on the device waits its turn. Here the handler runs as a job of the
application's queue (one worker owns the device; progress, interrupt and `shared.state` apply)."""
from __future__ import annotations

import functools
from typing import Any, Callable


def wrap_gradio_gpu_call(func: Callable[..., Any], extra_outputs: Any = None) -> Callable[..., Any]:
    @functools.wraps(func)
    def queued(*args: Any, **kwargs: Any) -> Any:
        from modules import shared
        jobs = getattr(shared._context, "jobs", None)
        # no application (a script run on its own), or already inside a job: call directly
        if jobs is None or jobs.on_worker_thread():
            return func(*args, **kwargs)
        return jobs.run("extension", lambda progress: func(*args, **kwargs))
    return queued


def wrap_gradio_call(func: Callable[..., Any], extra_outputs: Any = None,
                     add_stats: bool = False) -> Callable[..., Any]:
    """A1111 adds timing and error HTML around the handler; here it is the handler itself."""
    return func
