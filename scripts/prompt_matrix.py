"""Prompt matrix (A1111's built-in script): `base | part 1 | part 2 …` makes one image for every
combination of the parts (2^n), one seed for all unless asked, and a labelled grid first.

Written against the public Script API only; its arguments keep A1111's order (the API's
script_args): put_at_start, different_seeds, prompt_type, variations_delimiter, margin_size."""
import math

import gradio as gr

from modules import images, scripts, shared
from modules.processing import process_images
from modules.processing.grid_annotations import (GridAnnotation, draw_grid_annotations,
                                                 grid_with_margin)


def combinations(prompt: str, *, put_at_start: bool, delimiter: str) -> tuple[list[str], list[str]]:
    """(the parts of `prompt`, one prompt per combination): combination i holds the variable
    part j when bit j of i is set."""
    parts = prompt.split("|")
    base, variables = parts[0].strip(), [part.strip().strip(",").strip() for part in parts[1:]]
    prompts = []
    for number in range(1 << len(variables)):
        chosen = [part for bit, part in enumerate(variables) if number & (1 << bit)]
        pieces = [*chosen, base] if put_at_start else [base, *chosen]
        prompts.append(delimiter.join(piece for piece in pieces if piece))
    return [base, *variables], prompts


def labels(parts: list[str], count: int, offset: int) -> list[list[GridAnnotation]]:
    """For each of the 2^count positions of an axis: its parts, active where its bit is set."""
    return [[GridAnnotation(part, bool(position & (1 << bit)))
             for bit, part in enumerate(parts[offset:offset + count])]
            for position in range(1 << count)]


class Script(scripts.Script):
    def title(self):
        return "Prompt matrix"

    def ui(self, is_img2img):
        with gr.Row():
            with gr.Column():
                put_at_start = gr.Checkbox(label="Put variable parts at start of prompt",
                                           value=False, elem_id=self.elem_id("put_at_start"))
                different_seeds = gr.Checkbox(label="Use different seed for each picture",
                                              value=False, elem_id=self.elem_id("different_seeds"))
            with gr.Column():
                prompt_type = gr.Radio(["positive", "negative"], label="Select prompt",
                                       value="positive", elem_id=self.elem_id("prompt_type"))
                delimiter = gr.Radio(["comma", "space"], label="Select joining char",
                                     value="comma", elem_id=self.elem_id("variations_delimiter"))
            with gr.Column():
                margin_size = gr.Slider(label="Grid margins (px)", minimum=0, maximum=500,
                                        value=0, step=2, elem_id=self.elem_id("margin_size"))
        return [put_at_start, different_seeds, prompt_type, delimiter, margin_size]

    def run(self, p, put_at_start, different_seeds, prompt_type, variations_delimiter,
            margin_size):
        if prompt_type not in ("positive", "negative"):
            raise ValueError(f"Unknown prompt type {prompt_type!r}: positive or negative")
        if variations_delimiter not in ("comma", "space"):
            raise ValueError(f"Unknown joining char {variations_delimiter!r}: comma or space")
        source = p.prompt if prompt_type == "positive" else p.negative_prompt
        source = source[0] if isinstance(source, list) else source
        parts, prompts = combinations(source, put_at_start=bool(put_at_start),
                                      delimiter=", " if variations_delimiter == "comma" else " ")
        seed = p.seed if isinstance(p.seed, int) and p.seed != -1 else \
            scripts_seed(p.seed)
        p.n_iter = math.ceil(len(prompts) / p.batch_size)
        p.do_not_save_grid = True
        if prompt_type == "positive":
            p.prompt = prompts
        else:
            p.negative_prompt = prompts
        p.seed = [seed + (index if different_seeds else 0) for index in range(len(prompts))]
        processed = process_images(p)
        if not processed.images:
            return processed

        variables = len(parts) - 1
        across, down = (variables + 1) // 2, variables // 2
        width, height = processed.images[0].size
        margin = int(margin_size or 0)
        grid = grid_with_margin(processed.images, 1 << across, 1 << down, margin)
        grid = draw_grid_annotations(grid, width, height, labels(parts, across, 1),
                                     labels(parts, down, 1 + across), margin)
        processed.images.insert(0, grid)
        processed.infotexts.insert(0, processed.infotexts[0])
        processed.index_of_first_image = 1
        if shared.opts.grid_save:
            images.save_image(grid, p.outpath_grids or shared.opts.outdir_txt2img_grids,
                              "prompt_matrix", extension=shared.opts.grid_format, prompt=source,
                              seed=processed.seed, grid=True, p=p)
        return processed


def scripts_seed(seed) -> int:
    """A fixed seed for the whole matrix (A1111's fix_seed): -1 or empty is drawn at random."""
    import random
    return int(seed) if seed not in (None, "", -1) else random.randrange(4294967294)
