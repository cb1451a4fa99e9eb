"""SD upscale (A1111's built-in img2img script): the init image is enlarged by an upscaler of
the registry, cut into overlapping tiles of the tab's width x height, each tile redrawn by
img2img (the tab's prompt, seed and denoising strength), and the tiles blended back together.
The result is the init image's size times the scale factor; batch count makes that many.

Arguments in A1111's order: info (the help text), overlap, upscaler_index (index into the
upscaler list, or its name), scale_factor."""
import math

import gradio as gr
from PIL import Image

from modules import images, scripts, shared
from modules.processing import Processed, fix_seed, process_images


def find_upscaler(chosen):
    upscalers = shared.sd_upscalers
    if isinstance(chosen, str) and not chosen.strip().isdigit():
        for upscaler in upscalers:
            if upscaler.name.lower() == chosen.strip().lower():
                return upscaler
        raise ValueError(f"Unknown upscaler {chosen!r}: {', '.join(u.name for u in upscalers)}")
    index = int(chosen or 0)
    if not 0 <= index < len(upscalers):
        raise ValueError(f"Upscaler index {index} is out of range (0-{len(upscalers) - 1})")
    return upscalers[index]


class Script(scripts.Script):
    def title(self):
        return "SD upscale"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        info = gr.HTML("<p style=\"margin-bottom:0.75em\">Will upscale the image by the "
                       "selected scale factor; use width and height sliders to set tile "
                       "size</p>")
        overlap = gr.Slider(minimum=0, maximum=256, step=16, label="Tile overlap", value=64,
                            elem_id=self.elem_id("overlap"))
        scale_factor = gr.Slider(minimum=1.0, maximum=4.0, step=0.05, label="Scale Factor",
                                 value=2.0, elem_id=self.elem_id("scale_factor"))
        names = [upscaler.name for upscaler in shared.sd_upscalers]
        upscaler_index = gr.Radio(label="Upscaler", choices=names, value=names[0],
                                  type="index", elem_id=self.elem_id("upscaler_index"))
        return [info, overlap, upscaler_index, scale_factor]

    def run(self, p, _, overlap, upscaler_index, scale_factor):
        upscaler = find_upscaler(upscaler_index)
        scale_factor, overlap = float(scale_factor), int(overlap)
        if not 1.0 <= scale_factor <= 8.0:
            raise ValueError(f"Scale factor {scale_factor:g} is outside 1-8")
        if not p.init_images:
            raise ValueError("SD upscale needs an init image")
        fix_seed(p)
        p.extra_generation_params = {**(p.extra_generation_params or {}),
                                     "SD upscale overlap": overlap,
                                     "SD upscale upscaler": upscaler.name}
        source = p.init_images[0].convert("RGB")
        if upscaler.name != "None":
            size = (int(source.width * scale_factor), int(source.height * scale_factor))
            source = images.resize_image(0, source, *size, upscaler_name=upscaler.name)
        grid = images.split_grid(source, tile_w=p.width, tile_h=p.height, overlap=overlap)
        p.width, p.height = grid.tile_w, grid.tile_h        # an image smaller than one tile
        work = [tile for _, _, row in grid.tiles for _, _, tile in row]
        batch_size, upscale_count, seed = p.batch_size, p.n_iter, p.seed
        p.n_iter, p.do_not_save_grid, p.do_not_save_samples = 1, True, True
        batches = math.ceil(len(work) / batch_size)
        shared.state.job_count = batches * upscale_count
        results, first_info = [], ""
        for number in range(upscale_count):
            p.seed = seed + number
            done = []
            for batch in range(batches):
                p.init_images = work[batch * batch_size:(batch + 1) * batch_size]
                p.batch_size = len(p.init_images)
                shared.state.job = f"Batch {batch + 1 + number * batches} out of " \
                                   f"{shared.state.job_count}"
                processed = process_images(p)
                first_info = first_info or (processed.infotexts or [""])[0]
                p.seed = processed.seed + 1
                done += processed.images[processed.index_of_first_image:]
                if shared.state.interrupted:
                    break
            self._put_back(grid, done, (p.width, p.height))
            combined = images.combine_grid(grid)
            results.append(combined)
            if shared.opts.samples_save:
                images.save_image(combined, p.outpath_samples, "", seed + number, p.prompt,
                                  shared.opts.samples_format, info=first_info, p=p)
            if shared.state.interrupted:
                break
        return Processed(p, results, seed, first_info, infotexts=[first_info] * len(results))

    @staticmethod
    def _put_back(grid, processed_tiles, size):
        index = 0
        for _, _, row in grid.tiles:
            for tile in row:
                tile[2] = processed_tiles[index] if index < len(processed_tiles) else \
                    Image.new("RGB", size)
                index += 1
