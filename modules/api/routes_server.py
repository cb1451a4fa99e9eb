"""POST /sdapi/v1/server-kill, /server-restart, /server-stop: only with --api-server-stop
(a1111-compat.md §2).

kill and stop answer first, then end the process through `shutdown` (by default a SIGINT to this
process, which uvicorn turns into a clean shutdown: requests finish, the job worker stops).
This server cannot restart itself, so restart is 501, as A1111 answers when not restartable.
"""
from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Callable

from fastapi import APIRouter, BackgroundTasks, HTTPException
from fastapi.responses import PlainTextResponse

if TYPE_CHECKING:
    from modules.app.context import AppContext

ShutdownCallback = Callable[[], None]


def signal_shutdown() -> None:
    """Ask the server to stop the way Ctrl+C does."""
    signal.raise_signal(signal.SIGINT)


def server_stop_enabled(ctx: "AppContext") -> bool:
    return bool(getattr(ctx.args, "api_server_stop", False))


def server_router(*, shutdown: ShutdownCallback = signal_shutdown) -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1")

    @router.post("/server-kill", tags=["server"])
    def kill_webui(background: BackgroundTasks) -> None:
        background.add_task(shutdown)

    @router.post("/server-restart", tags=["server"], status_code=501)
    def restart_webui() -> None:
        raise HTTPException(status_code=501, detail=(
            "Server restart is not available: this server is not restartable; use "
            "/sdapi/v1/server-stop and start it again (or run it under a supervisor)"))

    @router.post("/server-stop", tags=["server"], response_class=PlainTextResponse)
    def stop_webui(background: BackgroundTasks) -> str:
        background.add_task(shutdown)
        return "Stopping."

    return router
