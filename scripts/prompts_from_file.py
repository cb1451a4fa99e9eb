"""Prompts from file or textbox (A1111's built-in script): one job per line. A plain line is a
prompt; a line of `--option value` pairs (shell quoting) sets the job's fields, e.g.
`--prompt "a cat" --negative_prompt "blurry" --steps 20 --seed 5 --width 512`.

Arguments in A1111's order: checkbox_iterate, checkbox_iterate_batch, prompt_position,
prompt_txt. A file dropped on the upload fills the textbox."""
import copy
import shlex

import gradio as gr

from modules import scripts, shared
from modules.processing import Processed, fix_seed, process_images


def _text(value):
    return str(value)


#: the options a line may set, and how their values are read (A1111's list)
LINE_OPTIONS = {
    "sd_model": _text, "outpath_samples": _text, "outpath_grids": _text,
    "prompt_for_display": _text, "prompt": _text, "negative_prompt": _text,
    "styles": lambda value: [value] if isinstance(value, str) else list(value),
    "seed": int, "subseed_strength": float, "subseed": int, "seed_resize_from_h": int,
    "seed_resize_from_w": int, "sampler_index": _text, "sampler_name": _text,
    "batch_size": int, "n_iter": int, "steps": int, "cfg_scale": float, "width": int,
    "height": int, "restore_faces": lambda value: str(value).lower() in ("true", "1", "yes"),
    "tiling": lambda value: str(value).lower() in ("true", "1", "yes"),
    "do_not_save_samples": lambda value: str(value).lower() in ("true", "1", "yes"),
    "do_not_save_grid": lambda value: str(value).lower() in ("true", "1", "yes"),
}


def parse_line(line: str) -> dict:
    """One line → the job's fields. A line that does not start with `--` is the prompt."""
    if not line.startswith("--"):
        return {"prompt": line}
    words = shlex.split(line)
    fields, index = {}, 0
    while index < len(words):
        word = words[index]
        if not word.startswith("--"):
            raise ValueError(f"unexpected {word!r} in line: {line}")
        name = word[2:]
        if name not in LINE_OPTIONS:
            raise ValueError(f"unknown option --{name} in line: {line}")
        values = []
        index += 1
        while index < len(words) and not words[index].startswith("--"):
            values.append(words[index])
            index += 1
        if not values:
            raise ValueError(f"--{name} needs a value in line: {line}")
        value = values if name == "styles" else " ".join(values)
        fields[name] = LINE_OPTIONS[name](value)
    return fields


class Script(scripts.Script):
    def title(self):
        return "Prompts from file or textbox"

    def ui(self, is_img2img):
        checkbox_iterate = gr.Checkbox(label="Iterate seed every line", value=False,
                                       elem_id=self.elem_id("checkbox_iterate"))
        checkbox_iterate_batch = gr.Checkbox(label="Use same random seed for all lines",
                                             value=False,
                                             elem_id=self.elem_id("checkbox_iterate_batch"))
        prompt_position = gr.Radio(["start", "end"], label="Insert prompts at the",
                                   value="start", elem_id=self.elem_id("prompt_position"))
        prompt_txt = gr.Textbox(label="List of prompt inputs", lines=2,
                                elem_id=self.elem_id("prompt_txt"))
        upload = gr.File(label="Upload prompt inputs", type="binary",
                         elem_id=self.elem_id("file"))
        upload.change(lambda data: data.decode("utf8", errors="ignore") if data else "",
                      inputs=[upload], outputs=[prompt_txt], show_progress="hidden")
        return [checkbox_iterate, checkbox_iterate_batch, prompt_position, prompt_txt]

    def run(self, p, checkbox_iterate, checkbox_iterate_batch, prompt_position, prompt_txt):
        lines = [line.strip() for line in (prompt_txt or "").splitlines() if line.strip()]
        jobs = [parse_line(line) for line in lines]
        if checkbox_iterate or checkbox_iterate_batch:
            fix_seed(p)
        images, all_prompts, infotexts = [], [], []
        for job in jobs:
            if shared.state.interrupted:
                break
            copied = copy.copy(p)
            copied.extra_generation_params = dict(p.extra_generation_params)
            prompt = job.get("prompt")
            if prompt and p.prompt:
                job["prompt"] = f"{prompt} {p.prompt}" if prompt_position == "start" \
                    else f"{p.prompt} {prompt}"
            for name, value in job.items():
                setattr(copied, name, value)
            processed = process_images(copied)
            images += processed.images
            all_prompts += processed.all_prompts
            infotexts += processed.infotexts
            if checkbox_iterate:
                p.seed = p.seed + p.batch_size * p.n_iter
        return Processed(p, images, p.seed, "", all_prompts=all_prompts, infotexts=infotexts)
