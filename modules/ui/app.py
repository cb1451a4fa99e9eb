"""The Gradio UI (Blocks with one module per tab) mounted on the FastAPI app, with the A1111 API
beside it when `--api` is given."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import gradio as gr
from fastapi import FastAPI
from gradio.routes import App as GradioApp
from starlette.routing import BaseRoute, Mount

from modules.api.app import API_TITLE, configure_app, register_api_routes
from modules.api.auth import parse_credentials
from modules.api.routes_generation import Txt2ImgRunner
from modules.ui.assets import register_licenses_route, ui_assets_for
from modules.ui.common import PageLoadRefresh, UiTab
from modules.ui.extras_tab import build_extras_tab
from modules.ui.img2img_tab import Img2ImgRunner, build_img2img_tab
from modules.ui.extensions_tab import build_extensions_tab
from modules.ui.image_browser_tab import build_image_browser_tab
from modules.ui.train_tab import build_train_tab
from modules.ui.merger_tab import build_checkpoint_merger_tab, current_title
from modules.ui.pnginfo_tab import build_pnginfo_tab
from modules.ui.quicksettings import build_quicksettings
from modules.ui.send_to import SendToRegistry, components_by_elem_id
from modules.ui.settings_tab import build_settings_tab
from modules.ui.txt2img_tab import build_txt2img_tab
from modules.ui.ui_config import apply_ui_config

if TYPE_CHECKING:
    from modules.app.context import AppContext

UI_TITLE = "Stable Diffusion"


def default_tabs(*, txt2img_runner: Txt2ImgRunner | None = None,
                 img2img_runner: Img2ImgRunner | None = None,
                 send_to: SendToRegistry | None = None,
                 page_load: PageLoadRefresh | None = None) -> list[UiTab]:
    """The tab registry, in A1111's display order; tab ids are A1111's (they prefix the keys of
    ui-config.json). `send_to` collects the "Send to …" buttons of the tabs that have them,
    `page_load` the controls that show stored values again when the page reloads."""
    return [
        UiTab("txt2img", "txt2img", lambda ctx: build_txt2img_tab(ctx, txt2img_runner, send_to)),
        UiTab("img2img", "img2img", lambda ctx: build_img2img_tab(ctx, img2img_runner, send_to)),
        UiTab("extras", "Extras", build_extras_tab),
        UiTab("pnginfo", "PNG Info", lambda ctx: build_pnginfo_tab(ctx, send_to)),
        UiTab("modelmerger", "Checkpoint Merger", build_checkpoint_merger_tab),
        UiTab("train", "Train", build_train_tab),
        UiTab("image_browser", "Image Browser",
              lambda ctx: build_image_browser_tab(ctx, send_to)),
        UiTab("settings", "Settings", lambda ctx: build_settings_tab(ctx, page_load)),
        UiTab("extensions", "Extensions", build_extensions_tab),
    ]


def build_ui(ctx: "AppContext", *, tabs: Sequence[UiTab] | None = None,
             txt2img_runner: Txt2ImgRunner | None = None,
             img2img_runner: Img2ImgRunner | None = None,
             send_to: SendToRegistry | None = None) -> gr.Blocks:
    """The whole page. `send_to` is the registry the given `tabs` put their "Send to" buttons in
    (default_tabs gets a fresh one when `tabs` is not given)."""
    send_to = send_to if send_to is not None else SendToRegistry()
    page_load = PageLoadRefresh()
    ctx.scripts.callbacks.run("before_ui")
    if tabs is None:
        tabs = default_tabs(txt2img_runner=txt2img_runner, img2img_runner=img2img_runner,
                            send_to=send_to, page_load=page_load)
        settings_at = next(index for index, tab in enumerate(tabs) if tab.tab_id == "settings")
        tabs[settings_at:settings_at] = extension_tabs(ctx)
    for runner in (ctx.scripts.txt2img, ctx.scripts.img2img):
        # scripts' args arrays are laid out in pages of their own: inside this page's Blocks
        # those pages would be drawn into it (each script's controls twice)
        if runner is not None:
            runner.default_args()
    ctx.scripts.postprocessing.default_values()
    with gr.Blocks(title=UI_TITLE, analytics_enabled=False) as blocks:
        build_quicksettings(ctx, page_load)
        tab_blocks: list[tuple[str, gr.Tab]] = []
        with gr.Tabs(elem_id="tabs") as main_tabs:
            for tab in tabs:
                with gr.Tab(tab.label, id=tab.tab_id, elem_id=f"tab_{tab.tab_id}") as tab_block:
                    tab.build(ctx)
                tab_blocks.append((tab.tab_id, tab_block))
        _demo_model_sizes(ctx, blocks, page_load)
        _list_new_checkpoints(ctx, blocks)
        page_load.wire(blocks)
        send_to.wire(blocks, main_tabs, lambda: (bool(ctx.options.get("send_seed")),
                                                 bool(ctx.options.get("send_size"))))
        # before the Blocks close: Gradio freezes the page config on exit
        apply_ui_config(tab_blocks, ctx.paths.ui_config_file)
    return blocks


def extension_tabs(ctx: "AppContext") -> list[UiTab]:
    """The tabs extensions add through on_ui_tabs ((Blocks, title, elem_id) each), rendered before
    Settings as A1111 does; a callback that raised adds none (it is reported)."""
    tabs = []
    for result in ctx.scripts.callbacks.run("ui_tabs"):
        for entry in result or []:
            try:
                interface, label, tab_id = entry[0], entry[1], entry[2]
            except (TypeError, IndexError):
                continue
            tabs.append(UiTab(tab_id, label, lambda ctx, interface=interface: interface.render()))
    return tabs


def _list_new_checkpoints(ctx: "AppContext", blocks: gr.Blocks) -> None:
    """A checkpoint the merger has just written shows at once in every checkpoint dropdown of
    the page (quicksettings, the refiners), not only in the merger's own."""
    by_elem_id = components_by_elem_id(blocks)
    merge_result = by_elem_id.get("modelmerger_result")
    dropdowns = [by_elem_id[elem_id] for elem_id in ("setting_sd_model_checkpoint",
                                                     "txt2img_refiner_checkpoint",
                                                     "img2img_refiner_checkpoint")
                 if elem_id in by_elem_id]
    if merge_result is None or not dropdowns:
        return

    def listed(*chosen: str | None) -> list[Any]:
        # a merge hashes its inputs, so a chosen "x.safetensors" may now be "x.safetensors [hash]"
        return [gr.update(choices=ctx.checkpoints.titles(), value=current_title(ctx, value))
                for value in chosen]

    merge_result.change(listed, inputs=dropdowns, outputs=dropdowns, api_visibility="private")


def _demo_model_sizes(ctx: "AppContext", blocks: gr.Blocks, page_load: PageLoadRefresh) -> None:
    """While the demo model is the current one, a page opens with its native size (64×64) in
    the width / height of txt2img and img2img instead of 512."""
    by_elem_id = components_by_elem_id(blocks)
    pairs = [(by_elem_id[f"{tab}_width"], by_elem_id[f"{tab}_height"])
             for tab in ("txt2img", "img2img")
             if f"{tab}_width" in by_elem_id and f"{tab}_height" in by_elem_id]
    if not pairs:
        return

    def sizes() -> list[Any]:
        current = ctx.model_manager.current_checkpoint()
        native = current.native_size() if current is not None and current.is_demo else None
        if native is None:
            return [gr.skip() for _ in pairs for _ in range(2)]
        return [value for _ in pairs for value in native]
    page_load.add([component for pair in pairs for component in pair], sizes)


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
    # extensions add their routes here: before Gradio is mounted at "/", which would take them
    ctx.scripts.callbacks.run("app_started", blocks, app)
    credentials = gradio_credentials(getattr(args, "gradio_auth", None),
                                     getattr(args, "gradio_auth_path", None))
    allowed = list(getattr(args, "gradio_allowed_path", None) or [])
    register_licenses_route(app, ctx.paths.root)
    # --subpath reaches Gradio through uvicorn's root_path (set in webui.py)
    return gr.mount_gradio_app(app, blocks, path="/", auth=credentials or None,
                               allowed_paths=allowed or None,
                               **ui_assets_for(args, ctx.paths,
                                               ctx.options.get("localization")).mount_kwargs())
