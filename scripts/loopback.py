"""Loopback (A1111's built-in img2img script): img2img run `loops` times, each run starting from
the image the previous one made, with the denoising strength moving from the tab's value to
the final one along a curve, the seed one higher each loop. The gallery shows every loop's image
(and a grid of them); with a batch count above 1, each batch's last image.

Arguments in A1111's order: loops, final_denoising_strength, denoising_curve,
append_interrogation ("None" here: interrogation needs the caption models of the Extras work)."""
import math

import gradio as gr

from modules import images, scripts, shared
from modules.processing import Processed, fix_seed, process_images

CURVES = ("Aggressive", "Linear", "Lazy")


def denoising_strength_at(loop, loops, initial, final, curve):
    """The strength of loop `loop` (0-based): `initial` at the first, `final` at the last."""
    if loops <= 1:
        return initial
    progress = loop / (loops - 1)
    if curve == "Aggressive":
        progress = math.sin(progress * math.pi / 2)
    elif curve == "Lazy":
        progress = 1 - math.cos(progress * math.pi / 2)
    return initial + (final - initial) * progress


class Script(scripts.Script):
    def title(self):
        return "Loopback"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        loops = gr.Slider(minimum=1, maximum=32, step=1, label="Loops", value=4,
                          elem_id=self.elem_id("loops"))
        final_denoising_strength = gr.Slider(minimum=0, maximum=1, step=0.01,
                                             label="Final denoising strength", value=0.5,
                                             elem_id=self.elem_id("final_denoising_strength"))
        denoising_curve = gr.Dropdown(label="Denoising strength curve", choices=list(CURVES),
                                      value="Linear")
        append_interrogation = gr.Dropdown(label="Append interrogated prompt at each iteration",
                                           choices=["None"], value="None")
        return [loops, final_denoising_strength, denoising_curve, append_interrogation]

    def run(self, p, loops, final_denoising_strength, denoising_curve,
            append_interrogation="None"):
        loops = int(loops)
        if loops < 1:
            raise ValueError(f"Loops must be 1 or more, got {loops}")
        if denoising_curve not in CURVES:
            raise ValueError(f"Unknown denoising curve {denoising_curve!r}: "
                             f"{', '.join(CURVES)}")
        if append_interrogation not in (None, "", "None"):
            raise ValueError(f"Interrogation ({append_interrogation}) is not available in this "
                             f"build; use 'None'")
        fix_seed(p)
        batch_count = p.n_iter
        initial_strength = p.denoising_strength
        first_images, original_fill = p.init_images, p.inpainting_fill
        p.extra_generation_params = {**(p.extra_generation_params or {}),
                                     "Final denoising strength": final_denoising_strength,
                                     "Denoising curve": denoising_curve}
        p.batch_size, p.n_iter, p.do_not_save_grid = 1, 1, True
        shared.state.job_count = loops * batch_count
        shown, infos, first_seed, first_info = [], [], None, ""
        for batch in range(batch_count):
            p.init_images, p.denoising_strength = first_images, initial_strength
            last, last_info = None, ""
            for loop in range(loops):
                shared.state.job = f"Iteration {loop + 1}/{loops}, batch {batch + 1}/{batch_count}"
                processed = process_images(p)
                if shared.state.interrupted or not processed.images:
                    break
                if first_seed is None:
                    first_seed, first_info = processed.seed, processed.infotexts[0]
                last, last_info = processed.images[0], processed.infotexts[0]
                p.seed = processed.seed + 1
                p.denoising_strength = denoising_strength_at(
                    loop + 1, loops, initial_strength, final_denoising_strength,
                    denoising_curve)
                p.init_images = [last]
                p.inpainting_fill = 1        # later loops keep the masked content: "original"
                if batch_count == 1:
                    shown.append(last)
                    infos.append(last_info)
            if batch_count > 1 and last is not None:
                shown.append(last)
                infos.append(last_info)
            p.inpainting_fill = original_fill
            if shared.state.interrupted:
                break
        grids = []
        if len(shown) > 1:
            grid = images.image_grid(shown, rows=1)
            if shared.opts.grid_save:
                images.save_image(grid, p.outpath_grids, "grid", first_seed, p.prompt,
                                  shared.opts.grid_format, info=first_info, grid=True, p=p)
            if shared.opts.return_grid:
                grids.append(grid)
        return Processed(p, grids + shown, first_seed if first_seed is not None else -1,
                         first_info, index_of_first_image=len(grids),
                         infotexts=[first_info] * len(grids) + infos)
