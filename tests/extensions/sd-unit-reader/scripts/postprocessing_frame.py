"""A test extension's Extras step, written the way community postprocessing scripts are: a
frame of `width` px in a colour drawn around the image, recorded in the postprocessing
infotext; with "copy" it also returns the unframed image as an extra result."""
import gradio as gr
from PIL import ImageDraw

from modules import scripts_postprocessing


class ScriptPostprocessingFrame(scripts_postprocessing.ScriptPostprocessing):
    name = "Frame"
    order = 5000

    def ui(self):
        return {
            "width": gr.Slider(minimum=0, maximum=16, step=1, value=2, label="Frame width",
                               elem_id="extras_frame_width"),
            "color": gr.Textbox(value="#ff0000", label="Frame colour",
                                elem_id="extras_frame_color"),
            "copy": gr.Checkbox(value=False, label="Also keep the image without a frame",
                                elem_id="extras_frame_copy"),
        }

    def process(self, pp, width, color, copy):
        if color == "fail":
            raise ValueError("asked to fail")
        if not width:
            return
        if copy:
            pp.extra_images.append(pp.create_copy(pp.image.copy()))
        framed = pp.image.copy()
        ImageDraw.Draw(framed).rectangle((0, 0, framed.width - 1, framed.height - 1),
                                         outline=color, width=int(width))
        pp.image = framed
        pp.info["Frame"] = int(width)
