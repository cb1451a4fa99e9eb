"""The character-pose service, a built-in extension on the public seams only: `on_app_started`
mounts its routes (/character-pose/v1, in Swagger), `on_ui_settings` adds its settings, and its
work goes through the app's own HTTP API (txt2img with ControlNet units, /controlnet/*). Data:
<data dir>/character-pose (SQLite + PNGs); preset poses: this extension's poses/ folder."""
from __future__ import annotations

from pathlib import Path

from lib_character_pose.poses import load_presets
from lib_character_pose.routes import service_router
from lib_character_pose.service import BLEND_NAME, CharacterService, ServiceSettings
from lib_character_pose.store import CharacterStore

from modules import paths, script_callbacks, scripts, shared

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
                           depth_module=value("character_pose_depth_module"))


def on_ui_settings() -> None:
    for key, (default, label) in SETTINGS.items():
        shared.opts.add_option(key, shared.OptionInfo(default, label, section=SECTION))


def on_app_started(demo, app) -> None:
    store = CharacterStore(Path(paths.data_path) / "character-pose")
    service = CharacterService(store, load_presets(EXTENSION_DIR / "poses"), current_settings)
    app.include_router(service_router(service, lambda: app))


script_callbacks.on_ui_settings(on_ui_settings)
script_callbacks.on_app_started(on_app_started)
