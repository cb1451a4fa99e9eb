"""An always-on script with an on_mask_blend hook (what soft inpainting builds on): it counts
the inpainting blends of a job into the infotext, and with "Blend nothing" turned on it keeps
the model's latent everywhere (so the masked-out area is redrawn too)."""
import gradio as gr

from modules import scripts


class Script(scripts.Script):
    def title(self):
        return "Mask blend counter"

    def show(self, is_img2img):
        return scripts.AlwaysVisible if is_img2img else False

    def ui(self, is_img2img):
        return [gr.Checkbox(label="Blend nothing", value=False,
                            elem_id=self.elem_id("blend_nothing"))]

    def on_mask_blend(self, p, mba, blend_nothing):
        p.extra_generation_params["Mask blends"] = \
            p.extra_generation_params.get("Mask blends", 0) + 1
        assert mba.blended_latent.shape == mba.current_latent.shape == mba.init_latent.shape
        if blend_nothing:
            mba.blended_latent = mba.current_latent

    def process_before_every_sampling(self, p, blend_nothing, *, x, noise, c, uc):
        shapes = p.extra_generation_params.setdefault("Samplings", [])
        shapes.append("x".join(str(size) for size in x.shape[1:]))
        assert noise.shape == x.shape and len(c) == len(uc) == x.shape[0]

    def postprocess_maskoverlay(self, p, ppmo, blend_nothing):
        """With "Blend nothing", the model's pixels are kept outside the mask too."""
        p.extra_generation_params["Overlay size"] = "x".join(map(str, ppmo.overlay_image.size))
        if blend_nothing:
            ppmo.overlay_image = ppmo.overlay_image.copy()
            ppmo.overlay_image.putalpha(0)
