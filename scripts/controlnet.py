"""ControlNet as sd-webui-controlnet's clients use it: the always-on script "ControlNet"
(`alwayson_scripts: {"controlnet": {"args": [unit, …]}}`), one argument per unit. Its process
hook turns the enabled units into the job's UNet patch (`p.control_patch`), writes `ControlNet N`
infotext entries, and postprocess adds the detected maps to the returned images. The machinery
is modules/controlnet and modules/engine/controlnet.py."""
import gradio as gr

from modules import scripts, shared
from modules.controlnet.apply import job_patch, prepare_units
from modules.controlnet.units import UnitError
from modules.scripting.runner import ScriptArgsError


class Script(scripts.Script):
    def __init__(self):
        super().__init__()
        self.prepared = []

    def title(self):
        return "ControlNet"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        service = shared.controlnet
        count = service.unit_count if service is not None else 3
        return [gr.State({"enabled": False}) for _ in range(count)]

    def process(self, p, *units):
        self.prepared = []
        p.control_patch = None
        service = shared.controlnet
        if service is None or not any(units):
            return
        default_image = (p.init_images or [None])[0] if hasattr(p, "init_images") else None
        try:
            self.prepared = prepare_units(
                units, registry=service.models, preprocessors=service.preprocessors,
                unet=p.sd_model.config.unet, width=p.width, height=p.height,
                default_image=default_image)
        except UnitError as error:
            raise ScriptArgsError(str(error)) from error
        for item in self.prepared:
            p.extra_generation_params[f"ControlNet {item.index}"] = item.unit.infotext()
        p.control_patch = job_patch(self.prepared)

    def postprocess(self, p, processed, *units):
        p.control_patch = None
        maps = [item.detected_map for item in self.prepared if item.unit.save_detected_map]
        if maps and not shared.opts.data.get("control_net_no_detectmap", False):
            processed.images.extend(maps)
        self.prepared = []
