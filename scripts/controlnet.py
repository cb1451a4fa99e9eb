"""ControlNet as sd-webui-controlnet's clients use it: the always-on script "ControlNet"
(`alwayson_scripts: {"controlnet": {"args": [unit, …]}}`), one argument per unit. Its process
hook turns the enabled units into the job's UNet patch (`p.control_patch`), writes `ControlNet N`
infotext entries, and postprocess adds the detected maps to the returned images. The machinery
is modules/controlnet and modules/engine/controlnet.py."""
import gradio as gr
import numpy as np

from modules import scripts, shared
from modules.controlnet.apply import detect, job_patch, prepare_units
from modules.controlnet.models import control_type_of
from modules.controlnet.units import CONTROL_MODES, RESIZE_MODES, ControlNetUnit, UnitError
from modules.processing.memory_guard import InsufficientMemoryError
from modules.scripting.runner import ScriptArgsError

REFRESH_SYMBOL = "\U0001f504"  # 🔄
#: the unit fields the controls set, in the order of unit_controls' inputs
UNIT_FIELDS = ("enabled", "image", "module", "model", "weight", "guidance_start", "guidance_end",
               "resize_mode", "control_mode", "pixel_perfect", "processor_res", "threshold_a",
               "threshold_b")


def pasted_unit(service, params, index):
    """The unit a pasted infotext's `ControlNet N` entry describes, or None."""
    entry = params.get(f"ControlNet {index}")
    if not entry:
        return None
    try:
        unit = ControlNetUnit.from_infotext(str(entry))
    except UnitError:
        return None
    item = service.models.find(unit.model)      # the hash may differ from the file's
    unit.model = item.name if item is not None else unit.model
    return unit


def paste_reader(service, index, name):
    def read(params):
        unit = pasted_unit(service, params, index)
        return None if unit is None else getattr(unit, name)
    return read


def unit_controls(service, tab, index, paste_fields):
    """One unit's tab: its controls, kept in one gr.State dict (the script's argument, the same
    shape API clients send). Its infotext readers go into `paste_fields`."""
    prefix = f"{tab}_controlnet_unit_{index}"
    with gr.Tab(f"ControlNet Unit {index}"):
        state = gr.State({"enabled": False})
        with gr.Row():
            image = gr.Image(label="Control image", type="pil", elem_id=f"{prefix}_image",
                             sources=["upload", "clipboard"], height=256)
            preview = gr.Image(label="Preprocessor preview", type="pil", interactive=False,
                               elem_id=f"{prefix}_preview", height=256)
        with gr.Row():
            enabled = gr.Checkbox(label="Enable", value=False, elem_id=f"{prefix}_enabled")
            pixel_perfect = gr.Checkbox(label="Pixel Perfect", value=False,
                                        elem_id=f"{prefix}_pixel_perfect")
        control_type = gr.Radio(service.preprocessors.control_types(), value="All",
                                label="Control Type", elem_id=f"{prefix}_control_type")
        with gr.Row():
            module = gr.Dropdown(service.preprocessors.names(), value="none",
                                 label="Preprocessor", elem_id=f"{prefix}_module")
            model = gr.Dropdown([("None", "None"), *service.models.choices()], value="None",
                                label="Model", elem_id=f"{prefix}_model")
            refresh = gr.Button(REFRESH_SYMBOL, min_width=40, scale=0,
                                elem_id=f"{prefix}_refresh_models")
            run_preview = gr.Button("Preview", scale=0, elem_id=f"{prefix}_run_preview")
        weight = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Control Weight",
                           elem_id=f"{prefix}_weight")
        with gr.Row():
            guidance_start = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Starting Control "
                                       "Step", elem_id=f"{prefix}_guidance_start")
            guidance_end = gr.Slider(0.0, 1.0, value=1.0, step=0.01, label="Ending Control Step",
                                     elem_id=f"{prefix}_guidance_end")
        with gr.Row():
            processor_res = gr.Slider(64, 2048, value=512, step=8, label="Preprocessor "
                                      "Resolution", elem_id=f"{prefix}_processor_res")
            threshold_a = gr.Slider(-1, 255, value=-1, step=1, label="Threshold A (-1: default)",
                                    elem_id=f"{prefix}_threshold_a")
            threshold_b = gr.Slider(-1, 255, value=-1, step=1, label="Threshold B (-1: default)",
                                    elem_id=f"{prefix}_threshold_b")
        control_mode = gr.Radio(list(CONTROL_MODES), value=CONTROL_MODES[0], label="Control Mode",
                                elem_id=f"{prefix}_control_mode")
        resize_mode = gr.Radio(list(RESIZE_MODES), value=RESIZE_MODES[1], label="Resize Mode",
                               elem_id=f"{prefix}_resize_mode")
    controls = [enabled, image, module, model, weight, guidance_start, guidance_end, resize_mode,
                control_mode, pixel_perfect, processor_res, threshold_a, threshold_b]

    def as_unit(*values):
        return dict(zip(UNIT_FIELDS, values))

    paste_fields.extend((control, paste_reader(service, index, name))
                        for control, name in zip(controls, UNIT_FIELDS) if name != "image")

    def filtered(control_type):
        modules = service.preprocessors.for_control_type(control_type)
        models = [(label, name) for label, name in service.models.choices()
                  if control_type == "All" or control_type_of(name) == control_type]
        usable = [name for label, name in models if label == name]
        return (gr.update(choices=modules, value=modules[1 if len(modules) > 1 and
                                                        control_type != "All" else 0]),
                gr.update(choices=[("None", "None"), *models],
                          value=usable[0] if usable and control_type != "All" else "None"))

    def refreshed(current):
        service.models.refresh()
        return gr.update(choices=[("None", "None"), *service.models.choices()], value=current)

    def previewed(*values):
        unit = ControlNetUnit.from_value(as_unit(*values), index)
        picture, _ = unit.input_image()
        if picture is None:
            raise gr.Error("Upload a control image first")
        result = detect(unit, picture, service.preprocessors, width=picture.width,
                        height=picture.height, index=index)
        if result.message:
            gr.Warning(result.message)
        return np.asarray(result.image)

    for control in controls:
        control.change(as_unit, inputs=controls, outputs=[state], api_visibility="private",
                       show_progress="hidden")
    control_type.change(filtered, inputs=[control_type], outputs=[module, model],
                        api_visibility="private")
    refresh.click(refreshed, inputs=[model], outputs=[model], api_visibility="private")
    run_preview.click(previewed, inputs=controls, outputs=[preview], api_visibility="private")
    return state


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
        if service is None:
            return [gr.State({"enabled": False}) for _ in range(3)]
        tab = "img2img" if is_img2img else "txt2img"
        self.infotext_fields = []       # pasting "ControlNet N" entries restores the units
        with gr.Accordion("ControlNet", open=False, elem_id=f"{tab}_controlnet"):
            with gr.Tabs():
                states = [unit_controls(service, tab, index, self.infotext_fields)
                          for index in range(service.unit_count)]
        return states

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
                default_image=default_image, ensure_room=service.ensure_room)
        except (UnitError, InsufficientMemoryError) as error:
            raise ScriptArgsError(str(error)) from error
        for item in self.prepared:
            p.extra_generation_params[f"ControlNet {item.index}"] = item.unit.infotext()
        p.control_patch = job_patch(self.prepared)

    def postprocess(self, p, processed, *units):
        p.control_patch = None
        maps = [item.detected_map for item in self.prepared if item.unit.save_detected_map]
        if maps and not shared.opts.control_net_no_detectmap:
            processed.images.extend(maps)
        self.prepared = []
