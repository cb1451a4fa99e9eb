"""Outpainting mk2 (A1111's built-in img2img script): the image grows by `pixels` on each chosen
side, one side at a time. The new strip starts as noise matched to the image's colours, and the
strip plus the part of the image next to it (at most the tab's width or height) is inpainted
with the masked content kept ("original"), so the new area continues the picture; the image
itself stays as it was. Batch size and batch count make that many results.

Arguments in A1111's order: info (the help text), pixels, mask_blur, direction, noise_q (the
noise's fall-off exponent), color_variation."""
import math

import gradio as gr
import numpy as np
from PIL import ImageFilter

from modules import images, scripts, shared
from modules.processing import Processed, fix_seed, process_images
from modules.processing.outpainting import (Expansion, expand_canvas, matched_noise,
                                            new_area_mask)


def window_for(canvas_size, side, pixels, tile_size):
    """The box of the canvas redrawn for one side: the new strip and the image next to it, at
    most the tab's size (rounded up to a multiple of 8) across that side."""
    width, height = canvas_size
    across = min(width if side in ("left", "right") else height,
                 max(pixels, math.ceil(tile_size / 8) * 8))
    if side == "left":
        return 0, 0, across, height
    if side == "right":
        return width - across, 0, width, height
    if side == "up":
        return 0, 0, width, across
    return 0, height - across, width, height


class Script(scripts.Script):
    def title(self):
        return "Outpainting mk2"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        info = gr.HTML("<p style=\"margin-bottom:0.75em\">Recommended settings: Sampling Steps: "
                       "80-100, Sampler: Euler a, Denoising strength: 0.8</p>")
        pixels = gr.Slider(label="Pixels to expand", minimum=8, maximum=256, step=8, value=128,
                           elem_id=self.elem_id("pixels"))
        mask_blur = gr.Slider(label="Mask blur", minimum=0, maximum=64, step=1, value=8,
                              elem_id=self.elem_id("mask_blur"))
        direction = gr.CheckboxGroup(label="Outpainting direction", choices=["left", "right",
                                     "up", "down"], value=["left", "right", "up", "down"],
                                     elem_id=self.elem_id("direction"))
        noise_q = gr.Slider(label="Fall-off exponent (lower=higher detail)", minimum=0.0,
                            maximum=4.0, step=0.01, value=1.0, elem_id=self.elem_id("noise_q"))
        color_variation = gr.Slider(label="Color variation", minimum=0.0, maximum=1.0,
                                    step=0.01, value=0.05,
                                    elem_id=self.elem_id("color_variation"))
        return [info, pixels, mask_blur, direction, noise_q, color_variation]

    def run(self, p, _, pixels, mask_blur, direction, noise_q, color_variation):
        if not p.init_images:
            raise ValueError("Outpainting mk2 needs an init image")
        pixels, mask_blur = int(pixels), int(mask_blur)
        grow = Expansion.of(pixels, direction)
        sides = [side for side in ("left", "right", "up", "down") if getattr(grow, side)]
        fix_seed(p)
        tile_w, tile_h = p.width, p.height
        p.inpaint_full_res, p.inpainting_fill = False, 1
        p.do_not_save_samples, p.do_not_save_grid = True, True
        p.mask_blur_x = mask_blur * 4 if grow.left or grow.right else 0
        p.mask_blur_y = mask_blur * 4 if grow.up or grow.down else 0
        p.mask_blur = None
        count, batch_count, seed = p.batch_size, p.n_iter, p.seed
        p.n_iter, p.batch_size = 1, 1
        shared.state.job_count = batch_count * count * len(sides)
        results, first_info = [], ""
        for number in range(batch_count * count):
            image = p.init_images[0].convert("RGB")
            rng = np.random.default_rng(seed + number)
            for side in sides:
                if shared.state.interrupted:
                    break
                p.seed = seed + number
                image, info = self._grow(p, image, side, pixels, mask_blur, (tile_w, tile_h),
                                         rng, float(noise_q), float(color_variation))
                first_info = first_info or info
            results.append(image)
        return self._result(p, results, seed, first_info)

    @staticmethod
    def _grow(p, image, side, pixels, mask_blur, tile_size, rng, noise_q, color_variation):
        grow = Expansion(**{side: pixels})
        canvas = expand_canvas(image, grow)
        mask = new_area_mask(canvas.size, grow, inset=mask_blur)
        canvas = matched_noise(canvas, new_area_mask(canvas.size, grow), rng,
                               fall_off=noise_q, color_variation=color_variation)
        box = window_for(canvas.size, side, pixels,
                         tile_size[0] if side in ("left", "right") else tile_size[1])
        p.width, p.height = box[2] - box[0], box[3] - box[1]
        p.init_images, p.image_mask = [canvas.crop(box)], mask.crop(box)
        p.latent_mask = new_area_mask(canvas.size, grow, inset=mask_blur * 2).crop(box)
        processed = process_images(p)
        if processed.images:
            # only the new strip and the seam take the redrawn pixels: the image stays as it was
            seam = mask.crop(box).filter(ImageFilter.GaussianBlur(mask_blur / 2)) \
                if mask_blur else mask.crop(box)
            canvas.paste(processed.images[0].resize((p.width, p.height)), box[:2], mask=seam)
        return canvas, (processed.infotexts or [""])[0]

    @staticmethod
    def _result(p, results, seed, info):
        shown = list(results)
        make_grid = len(results) > 1 or not shared.opts.grid_only_if_multiple
        grid = images.image_grid(results) if make_grid else None
        if grid is not None and shared.opts.return_grid:
            shown.insert(0, grid)
        if shared.opts.samples_save:
            for image in results:
                images.save_image(image, p.outpath_samples, "", seed, p.prompt,
                                  shared.opts.samples_format, info=info, p=p)
        if grid is not None and shared.opts.grid_save:
            images.save_image(grid, p.outpath_grids, "grid", seed, p.prompt,
                              shared.opts.grid_format, info=info, grid=True, p=p)
        return Processed(p, shown, seed, info, index_of_first_image=len(shown) - len(results),
                         infotexts=[info] * len(shown))
