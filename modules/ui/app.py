"""The Gradio UI (Blocks with one module per tab) mounted on the FastAPI app, with the A1111 API
beside it when `--api` is given."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import gradio as gr
from fastapi import FastAPI
from gradio.routes import App as GradioApp
from starlette.routing import BaseRoute, Mount

from modules.api.app import API_TITLE, configure_app, register_api_routes
from modules.api.auth import parse_credentials
from modules.api.routes_generation import Txt2ImgRunner
from modules.ui.common import UiTab
from modules.ui.img2img_tab import Img2ImgRunner, build_img2img_tab
from modules.ui.quicksettings import build_quicksettings
from modules.ui.txt2img_tab import build_txt2img_tab

if TYPE_CHECKING:
    from modules.app.context import AppContext

UI_TITLE = "Stable Diffusion"


def default_tabs(*, txt2img_runner: Txt2ImgRunner | None = None,
                 img2img_runner: Img2ImgRunner | None = None) -> list[UiTab]:
    """The tab registry, in display order. Each later tab (extras, PNG info, checkpoint merger,
    train, settings, extensions) adds one entry here from its own module."""
    return [
        UiTab("txt2img", "txt2img", lambda ctx: build_txt2img_tab(ctx, txt2img_runner)),
        UiTab("img2img", "img2img", lambda ctx: build_img2img_tab(ctx, img2img_runner)),
    ]


def build_ui(ctx: "AppContext", *, tabs: Sequence[UiTab] | None = None,
             txt2img_runner: Txt2ImgRunner | None = None,
             img2img_runner: Img2ImgRunner | None = None) -> gr.Blocks:
    tabs = list(tabs) if tabs is not None else default_tabs(txt2img_runner=txt2img_runner,
                                                            img2img_runner=img2img_runner)
    with gr.Blocks(title=UI_TITLE, analytics_enabled=False) as blocks:
        build_quicksettings(ctx)
        with gr.Tabs(elem_id="tabs"):
            for tab in tabs:
                with gr.Tab(tab.label, id=tab.tab_id, elem_id=f"tab_{tab.tab_id}"):
                    tab.build(ctx)
    return blocks


def gradio_credentials(auth: str | None, auth_path: str | None) -> list[tuple[str, str]]:
    """--gradio-auth "u:p,u2:p2" plus the lines of --gradio-auth-path, as Gradio wants them."""
    specs = [auth or ""]
    if auth_path:
        specs.extend(Path(auth_path).read_text(encoding="utf-8").splitlines())
    credentials: dict[str, str] = {}
    for spec in specs:
        credentials.update(parse_credentials(spec))
    return list(credentials.items())


def is_gradio_mount(route: BaseRoute) -> bool:
    """The Gradio app mounted at /: --gradio-auth guards it, --api-auth does not."""
    return isinstance(route, Mount) and isinstance(route.app, GradioApp)


def create_ui_app(ctx: "AppContext", *, tabs: Sequence[UiTab] | None = None,
                  txt2img_runner: Txt2ImgRunner | None = None) -> FastAPI:
    """FastAPI app with /internal routes, the /sdapi/v1 API when --api, and the UI at /."""
    args = ctx.args
    app = FastAPI(title=API_TITLE, docs_url="/docs", redoc_url="/redoc")
    configure_app(app, ctx, ui_mode=True, auth_exempt=is_gradio_mount)
    if getattr(args, "api", False):
        register_api_routes(app, ctx, txt2img_runner=txt2img_runner)
    blocks = build_ui(ctx, tabs=tabs, txt2img_runner=txt2img_runner)
    credentials = gradio_credentials(getattr(args, "gradio_auth", None),
                                     getattr(args, "gradio_auth_path", None))
    allowed = list(getattr(args, "gradio_allowed_path", None) or [])
    # --subpath reaches Gradio through uvicorn's root_path (set in webui.py)
    return gr.mount_gradio_app(app, blocks, path="/", auth=credentials or None,
                               allowed_paths=allowed or None)
