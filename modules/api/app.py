"""Builds the FastAPI application of the A1111 API, for API-only mode (`--nowebui`) and for the
app Gradio is mounted on (`--api`)."""
from __future__ import annotations

import datetime
import logging
import time
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware

from modules.api.auth import basic_auth_dependency, parse_credentials
from modules.api.errors import install_error_handlers
from modules.api.routes_generation import Txt2ImgRunner, generation_router
from modules.api.routes_img2img import img2img_router
from modules.api.routes_info import info_router
from modules.api.routes_internal import internal_router

if TYPE_CHECKING:
    from modules.app.context import AppContext

log = logging.getLogger(__name__)

API_TITLE = "Stable Diffusion API"


def _install_middleware(app: FastAPI, ctx: "AppContext") -> None:
    args = ctx.args
    api_log = bool(getattr(args, "api_log", False))

    async def process_time(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        response.headers["X-Process-Time"] = f"{elapsed:.4f}"
        if api_log and request.url.path.startswith("/sdapi"):
            client = request.client.host if request.client else "-"
            log.info("API %s %s %s/%s %s %s %s %.4f", datetime.datetime.now().isoformat(),
                     response.status_code, request.url.scheme, request.scope.get("http_version"),
                     request.method, request.url.path, client, elapsed)
        return response

    # Starlette makes the last added middleware the outermost: the envelope (added by
    # install_error_handlers before this) sits inside, so error responses are timed too.
    app.middleware("http")(process_time)
    app.add_middleware(GZipMiddleware, minimum_size=1000)
    origins = [o for o in (getattr(args, "cors_allow_origins", None) or "").split(",") if o]
    origin_regex = getattr(args, "cors_allow_origins_regex", None)
    if origins or origin_regex:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_origin_regex=origin_regex,
                           allow_methods=["*"], allow_headers=["*"], allow_credentials=True)


def configure_app(app: FastAPI, ctx: "AppContext", *, ui_mode: bool) -> None:
    """Error envelope, middleware and the /internal routes: what both launch modes share."""
    install_error_handlers(app)
    _install_middleware(app, ctx)
    app.include_router(internal_router(ctx, ui_mode=ui_mode))


def api_auth_dependencies(ctx: "AppContext") -> list[Any]:
    credentials = parse_credentials(getattr(ctx.args, "api_auth", None))
    return [Depends(basic_auth_dependency(credentials))] if credentials else []


def register_api_routes(app: FastAPI, ctx: "AppContext", *,
                        txt2img_runner: Txt2ImgRunner | None = None) -> None:
    """The /sdapi/v1 routes, each behind --api-auth when it is set."""
    dependencies = api_auth_dependencies(ctx)
    app.include_router(generation_router(ctx, dependencies=dependencies,
                                         txt2img_runner=txt2img_runner))
    app.include_router(img2img_router(ctx, dependencies=dependencies))
    app.include_router(info_router(ctx, dependencies=dependencies))


def create_api_app(ctx: "AppContext", *, app: FastAPI | None = None, ui_mode: bool = False,
                   txt2img_runner: Txt2ImgRunner | None = None) -> FastAPI:
    """A configured app with every API route. Pass `app` to add them to an existing one (which
    must not have been configured yet); `ui_mode` adds POST /internal/progress."""
    if app is None:
        app = FastAPI(title=API_TITLE, docs_url="/docs", redoc_url="/redoc")
    configure_app(app, ctx, ui_mode=ui_mode)
    register_api_routes(app, ctx, txt2img_runner=txt2img_runner)
    return app
