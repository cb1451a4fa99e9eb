"""The character-pose service, a built-in extension on the public seams only: `on_app_started`
mounts its routes (/character-pose/v1, in Swagger), `on_ui_settings` adds its settings, and its
work goes through the app's own HTTP API (txt2img with ControlNet units, /controlnet/*). Data:
<data dir>/character-pose (SQLite + PNGs); preset poses: this extension's poses/ folder."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from lib_character_pose.poses import load_presets
from lib_character_pose.routes import service_router
from lib_character_pose.service import BATCH_SCRIPT, BLEND_NAME, BatchItem, CharacterService, \
    ServiceSettings
from lib_character_pose.store import CharacterStore
from lib_character_pose.client import AppClient
from lib_character_pose.ui import build_tab

import gradio as gr

from modules import paths, script_callbacks, scripts, shared
from modules.processing import Processed, process_images

EXTENSION_DIR = Path(scripts.basedir())
SECTION = ("character_pose", "Character pose")
SETTINGS = {
    "character_pose_checkpoint": (BLEND_NAME, "Checkpoint characters are made with (title or "
                                              "name; the checkpoint in use when it is missing)"),
    "character_pose_openpose_model": ("auto", "ControlNet for poses (auto: the first OpenPose "
                                              "model)"),
    "character_pose_depth_model": ("auto", "ControlNet for depth (auto: the first Depth model)"),
    "character_pose_depth_module": ("depth_anything_v2", "Depth preprocessor for reference "
                                                         "images"),
}


def current_settings() -> ServiceSettings:
    def value(key: str) -> str:
        stored = getattr(shared.opts, key, None)
        return str(stored) if stored else SETTINGS[key][0]
    return ServiceSettings(checkpoint=value("character_pose_checkpoint"),
                           openpose_model=value("character_pose_openpose_model"),
                           depth_model=value("character_pose_depth_model"),
                           depth_module=value("character_pose_depth_module"),
                           remote_workers=bool(getattr(shared.cmd_opts, "queue", None)))


def on_ui_settings() -> None:
    for key, (default, label) in SETTINGS.items():
        shared.opts.add_option(key, shared.OptionInfo(default, label, section=SECTION))


#: the service of this process, made when the app starts; the batch script (run by the job
#: worker) finds the batches the routes queued through it
_services: list[CharacterService] = []
_apps: list = []


def on_app_started(demo, app) -> None:
    store = CharacterStore(Path(paths.data_path) / "character-pose")
    service = CharacterService(store, load_presets(EXTENSION_DIR / "poses"), current_settings)
    _services[:] = [service]
    _apps[:] = [app]
    app.include_router(service_router(service, lambda: app))


def ui_client() -> AppClient | None:
    """The Character tab's way into the API. The owner is passed to the service explicitly;
    with --api-auth, the tab (already behind the UI's own login) passes the API's guard with
    its first account."""
    if not _apps:
        return None
    accounts = [entry.strip() for entry in (getattr(shared.cmd_opts, "api_auth", None) or "")
                .split(",") if ":" in entry]
    header = "Basic " + base64.b64encode(accounts[0].encode()).decode() if accounts else None
    return AppClient(_apps[0], header)


def on_ui_tabs():
    presets = load_presets(EXTENSION_DIR / "poses")
    tab = build_tab(lambda: _services[0] if _services else None, ui_client,
                    [(preset.name, preset.id) for preset in presets.values()])
    return [(tab, "Character", "character_pose")]


class Script(scripts.Script):
    """Runs a batch the service queued (POST …/characters/{id}/poses): the character in each
    pose, one after the other in one job, each image stored in its history."""

    def title(self):
        return BATCH_SCRIPT.capitalize()

    def show(self, is_img2img):
        return not is_img2img

    def ui(self, is_img2img):
        gr.Markdown("Runs the batches of the character-pose API (`/character-pose/v1`); to "
                    "re-pose a character here, use the Character tab.")
        token = gr.Textbox(visible=False)
        return [token]

    def run(self, p, token=""):
        if token.startswith("{"):
            # a batch queued for remote workers: the poses come with the job, and the service
            # that queued it stores the images from the job's result
            return self.draw(p, [BatchItem(item["pose_id"], item["units"], {})
                                 for item in json.loads(token)["items"]])
        batch = _services[0].batches.take(token) if _services and token else None
        if batch is None:
            raise ValueError("no character-pose batch with this token: queue batches with "
                             "POST /character-pose/v1/characters/{id}/poses")
        service = _services[0]

        def record(item, processed, image):
            service.record_render(batch.character, item.pose_id, batch.control, item.settings,
                                  processed.seed, processed.infotexts[0], png_base64(image))
        return self.draw(p, batch.items, record)

    def draw(self, p, items, record=None):
        """Each item's pose in turn with the ControlNet units it carries."""
        controlnet = next(s for s in p.scripts.alwayson if s.title() == "ControlNet")
        slots = controlnet.args_to - controlnet.args_from
        images, infotexts, seeds = [], [], []
        for item in items:
            units = (item.units + [{} for _ in range(slots)])[:slots]
            p.script_args[controlnet.args_from:controlnet.args_to] = units
            processed = process_images(p)
            image = processed.images[0]
            images.append(image)
            infotexts.append(processed.infotexts[0])
            seeds.append(processed.seed)
            if record is not None:
                record(item, processed, image)
        return Processed(p, images, seeds[0], infotexts[0], all_seeds=seeds,
                         infotexts=infotexts)


def png_base64(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


script_callbacks.on_ui_settings(on_ui_settings)
script_callbacks.on_app_started(on_app_started)
script_callbacks.on_ui_tabs(on_ui_tabs)
