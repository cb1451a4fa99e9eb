"""A test extension shaped like sd-webui-controlnet's API side: an always-on script whose
arguments are unit dicts (one gr.State per unit), as clients send them in
`alwayson_scripts: {"Unit reader": {"args": [unit, …]}}`. It reads each enabled unit the way
ControlNet does (base64 image, module, weight, control mode as a name or an index) and writes
what it read into the infotext."""
import base64
import io

import gradio as gr
from PIL import Image

from modules import scripts

MAX_UNITS = 3
CONTROL_MODES = ["Balanced", "My prompt is more important", "ControlNet is more important"]


def read_image(value):
    if not value:
        return None
    if isinstance(value, dict):          # {"image": b64, "mask": b64} form
        value = value.get("image")
    if isinstance(value, str) and value.startswith("data:"):
        value = value.split(",", 1)[1]
    return Image.open(io.BytesIO(base64.b64decode(value)))


def control_mode_name(value):
    return CONTROL_MODES[value] if isinstance(value, int) else str(value)


class Script(scripts.Script):
    def title(self):
        return "Unit reader"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.State({"enabled": False}) for _ in range(MAX_UNITS)]

    def process(self, p, *units):
        for index, unit in enumerate(units):
            if not isinstance(unit, dict) or not unit.get("enabled", True):
                continue
            image = read_image(unit.get("image") or unit.get("input_image"))
            size = f"{image.width}x{image.height}" if image is not None else "none"
            p.extra_generation_params[f"Unit {index}"] = (
                f"{unit.get('module', 'none')}, weight {unit.get('weight', 1.0)}, image {size}, "
                f"{control_mode_name(unit.get('control_mode', 0))}")
