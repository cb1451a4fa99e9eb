"""Poor man's outpainting (A1111's built-in img2img script): the canvas grows by `pixels` on the
chosen sides (to a multiple of 64), and the tiles of the tab's size that touch the new area are
inpainted with the chosen masked content; the original image stays as it was.

Arguments in A1111's order: pixels, mask_blur, inpainting_fill (index: fill, original, latent
noise, latent nothing), direction (a list of left / right / up / down)."""
import gradio as gr
from PIL import Image

from modules import images, scripts, shared
from modules.processing import Processed, fix_seed, process_images
from modules.processing.outpainting import Expansion, expand_canvas, new_area_mask

MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")


def masked_content_index(value):
    if isinstance(value, str) and not value.strip().isdigit():
        if value.strip().lower() not in MASKED_CONTENT:
            raise ValueError(f"Unknown masked content {value!r}: {', '.join(MASKED_CONTENT)}")
        return MASKED_CONTENT.index(value.strip().lower())
    index = int(value or 0)
    if not 0 <= index < len(MASKED_CONTENT):
        raise ValueError(f"Masked content {index} is out of range (0-3)")
    return index


def touches_new_area(x, y, width, height, canvas, grow):
    """Whether a tile at (x, y) reaches outside the original image."""
    return not (x >= grow.left and x + width <= canvas.width - grow.right
                and y >= grow.up and y + height <= canvas.height - grow.down)


class Script(scripts.Script):
    def title(self):
        return "Poor man's outpainting"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        pixels = gr.Slider(label="Pixels to expand", minimum=8, maximum=256, step=8, value=128,
                           elem_id=self.elem_id("pixels"))
        mask_blur = gr.Slider(label="Mask blur", minimum=0, maximum=64, step=1, value=4,
                              elem_id=self.elem_id("mask_blur"))
        inpainting_fill = gr.Radio(label="Masked content", choices=list(MASKED_CONTENT),
                                   value="fill", type="index",
                                   elem_id=self.elem_id("inpainting_fill"))
        direction = gr.CheckboxGroup(label="Outpainting direction", choices=["left", "right",
                                     "up", "down"], value=["left", "right", "up", "down"],
                                     elem_id=self.elem_id("direction"))
        return [pixels, mask_blur, inpainting_fill, direction]

    def run(self, p, pixels, mask_blur, inpainting_fill, direction):
        if not p.init_images:
            raise ValueError("Poor man's outpainting needs an init image")
        pixels, mask_blur = int(pixels), int(mask_blur)
        source = p.init_images[0].convert("RGB")
        grow = Expansion.of(pixels, direction).rounded_to(source.width, source.height, 64)
        fix_seed(p)
        p.mask_blur = mask_blur * 2
        p.inpainting_fill = masked_content_index(inpainting_fill)
        p.inpaint_full_res = False
        canvas = expand_canvas(source, grow)
        mask = new_area_mask(canvas.size, grow, inset=mask_blur * 2)
        latent_mask = new_area_mask(canvas.size, grow, inset=mask_blur // 2)
        tiles = images.split_grid(canvas, tile_w=p.width, tile_h=p.height, overlap=pixels)
        mask_tiles = images.split_grid(mask, tile_w=p.width, tile_h=p.height, overlap=pixels)
        latent_tiles = images.split_grid(latent_mask, tile_w=p.width, tile_h=p.height,
                                         overlap=pixels)
        p.width, p.height = tiles.tile_w, tiles.tile_h
        p.n_iter, p.batch_size, p.do_not_save_grid, p.do_not_save_samples = 1, 1, True, True
        work = []
        for (y, height, row), (_, _, mask_row), (_, _, latent_row) in zip(
                tiles.tiles, mask_tiles.tiles, latent_tiles.tiles):
            for tile, mask_tile, latent_tile in zip(row, mask_row, latent_row):
                if touches_new_area(tile[0], y, tile[1], height, canvas, grow):
                    work.append((tile, mask_tile[2], latent_tile[2]))
        shared.state.job_count = len(work)
        first_seed, first_info = p.seed, ""
        for number, (tile, mask_tile, latent_tile) in enumerate(work):
            if shared.state.interrupted:
                break
            shared.state.job = f"Batch {number + 1} out of {len(work)}"
            p.init_images, p.image_mask, p.latent_mask = [tile[2]], mask_tile, latent_tile
            processed = process_images(p)
            first_info = first_info or (processed.infotexts or [""])[0]
            p.seed = processed.seed + 1
            tile[2] = processed.images[0] if processed.images else \
                Image.new("RGB", (p.width, p.height))
        combined = images.combine_grid(tiles)
        if shared.opts.samples_save:
            images.save_image(combined, p.outpath_samples, "", first_seed, p.prompt,
                              shared.opts.samples_format, info=first_info, p=p)
        return Processed(p, [combined], first_seed, first_info, infotexts=[first_info])
