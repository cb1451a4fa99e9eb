"""Builds the FastAPI application of the A1111 API, for API-only mode (`--nowebui`) and for the
app Gradio is mounted on (`--api`)."""
from __future__ import annotations

import datetime
import logging
import time
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware

from modules.api.auth import BasicAuthMiddleware, RoutePredicate, api_routes_of, every_request, \
    parse_credentials
from modules.api.errors import install_error_handlers
from modules.api.request_size import MB, RequestSizeLimitMiddleware
from modules.api.job_handlers import job_service_for
from modules.api.routes_controlnet import controlnet_router
from modules.api.routes_generation import Txt2ImgRunner, generation_router
from modules.api.routes_img2img import img2img_router
from modules.api.routes_info import info_router
from modules.api.routes_internal import internal_router
from modules.api.routes_jobs import jobs_router
from modules.api.routes_merge import merge_router
from modules.api.routes_models import models_router
from modules.api.routes_postprocessing import postprocessing_router
from modules.api.routes_server import server_router, server_stop_enabled
from modules.api.routes_training import training_router

if TYPE_CHECKING:
    from modules.app.context import AppContext

log = logging.getLogger(__name__)

API_TITLE = "Stable Diffusion API"


def _install_auth(app: FastAPI, ctx: "AppContext", auth_exempt: RoutePredicate | None) -> None:
    """--api-auth for every request of the app, except routes `auth_exempt` hands to another
    login (the Gradio mount in UI mode)."""
    credentials = parse_credentials(getattr(ctx.args, "api_auth", None))
    if not credentials:
        return
    is_protected = every_request if auth_exempt is None else api_routes_of(app,
                                                                         is_exempt=auth_exempt)
    app.add_middleware(BasicAuthMiddleware, credentials=credentials, is_protected=is_protected)


def _install_middleware(app: FastAPI, ctx: "AppContext",
                        auth_exempt: RoutePredicate | None) -> None:
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

    # Starlette makes the last added middleware the outermost. From the outside in: CORS (it
    # answers preflights, which carry no credentials, and labels 401s for allowed origins), GZip,
    # the request-body limit (before anything reads a body), timing/--api-log (so refused
    # requests are logged too), auth, the error envelope (added by install_error_handlers before
    # this).
    _install_auth(app, ctx, auth_exempt)
    app.middleware("http")(process_time)
    limits = ctx.limits
    app.add_middleware(RequestSizeLimitMiddleware,
                       max_bytes=lambda: int(limits.value("limit_request_mb") * MB),
                       describe_limit=lambda: limits.source("limit_request_mb"))
    app.add_middleware(GZipMiddleware, minimum_size=1000)
    origins = [origin.strip() for origin in
               (getattr(args, "cors_allow_origins", None) or "").split(",") if origin.strip()]
    origin_regex = getattr(args, "cors_allow_origins_regex", None)
    # Installed even without origins (then no cross-origin request is allowed), like A1111: it
    # also makes the mounted Gradio app drop its own localhost-permissive CORS handling.
    app.add_middleware(CORSMiddleware, allow_origins=origins, allow_origin_regex=origin_regex,
                       allow_methods=["*"], allow_headers=["*"], allow_credentials=True)


def configure_app(app: FastAPI, ctx: "AppContext", *, ui_mode: bool,
                  auth_exempt: RoutePredicate | None = None) -> None:
    """Error envelope, middleware (auth, CORS, GZip, timing) and the /internal routes: what both
    launch modes share. `auth_exempt` marks routes --api-auth leaves alone (UI mode: Gradio's)."""
    install_error_handlers(app)
    _install_middleware(app, ctx, auth_exempt)
    app.include_router(internal_router(ctx, ui_mode=ui_mode))


def register_api_routes(app: FastAPI, ctx: "AppContext", *,
                        txt2img_runner: Txt2ImgRunner | None = None) -> None:
    """The /sdapi/v1 routes. --api-auth is not a router dependency: BasicAuthMiddleware (see
    configure_app) guards every route, these and any added later, so routers get none. v1 and
    v2 generation share one job service (`ctx.job_service`, Redis with --queue)."""
    jobs = job_service_for(ctx, txt2img_runner=txt2img_runner)
    app.include_router(generation_router(ctx, txt2img_runner=txt2img_runner, service=jobs))
    app.include_router(img2img_router(ctx, service=jobs))
    app.include_router(info_router(ctx))
    app.include_router(jobs_router(ctx, service=jobs))
    app.include_router(models_router(ctx))
    app.include_router(merge_router(ctx))
    if getattr(ctx, "controlnet", None) is not None:
        app.include_router(controlnet_router(ctx))
    app.include_router(postprocessing_router(ctx))
    app.include_router(training_router(ctx))
    if server_stop_enabled(ctx):
        app.include_router(server_router())


def create_api_app(ctx: "AppContext", *, app: FastAPI | None = None, ui_mode: bool = False,
                   txt2img_runner: Txt2ImgRunner | None = None) -> FastAPI:
    """A configured app with every API route. Pass `app` to add them to an existing one (which
    must not have been configured yet); `ui_mode` adds POST /internal/progress."""
    if app is None:
        app = FastAPI(title=API_TITLE, docs_url="/docs", redoc_url="/redoc")
    configure_app(app, ctx, ui_mode=ui_mode)
    register_api_routes(app, ctx, txt2img_runner=txt2img_runner)
    ctx.scripts.callbacks.run("app_started", None, app)     # extensions add their routes
    return app
