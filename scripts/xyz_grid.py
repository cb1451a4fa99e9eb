"""X/Y/Z plot (A1111's built-in script): one image for every combination of up to three axes of
values (steps, CFG, sampler, checkpoint, prompt S/R, …), laid out as a labelled grid per Z value
and those grids side by side.

Written against the public Script API. What clients rely on keeps A1111's shape:
- `axis_options` in A1111 1.10's order (the API's x_type / y_type / z_type are indices into the
  list of the tab: the axes of the other tab left out); axes of our own ("Hires scale") come
  after A1111's, so its indices stay valid. Extensions may append AxisOption entries.
- script_args: x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type,
  z_values, z_values_dropdown, draw_legend, include_lone_images, include_sub_grids,
  no_fixed_seeds, vary_seeds_x, vary_seeds_y, vary_seeds_z, margin_size, csv_mode; the 14-value
  form of A1111 1.6-1.7 (…, no_fixed_seeds, margin_size) that webuiapi sends is read too, and
  booleans may come as "True" / "False".
Value syntax (ranges, CSV quoting): modules/processing/axis_values.py.
"""
import copy
import itertools
import logging
import os
import random

import gradio as gr
from PIL import Image

from modules import images, scripts, sd_models, sd_samplers, sd_schedulers, sd_vae, shared
from modules.processing import Processed, fix_seed, process_images
from modules.processing.axis_values import join_values, parse_axis_values
from modules.processing.grid_annotations import (GridAnnotation, draw_grid_annotations,
                                                 grid_with_margin)
from modules.processing.infotext import quote
from modules.ui_components import ToolButton

log = logging.getLogger(__name__)
FILL_SYMBOL = "\U0001f4d2"  # 📒


# -- how an axis value changes the processing object ---------------------------------------------
def apply_field(field):
    def apply(p, value, values):
        setattr(p, field, value)
    return apply


def apply_override(key, boolean=False):
    def apply(p, value, values):
        p.override_settings[key] = str(value).strip().lower() == "true" if boolean else value
    return apply


def apply_prompt(p, value, values):
    search = values[0]
    if search not in p.prompt and search not in p.negative_prompt:
        raise ValueError(f"Prompt S/R did not find {search} in prompt or negative prompt.")
    p.prompt = p.prompt.replace(search, value)
    p.negative_prompt = p.negative_prompt.replace(search, value)


def apply_order(p, order, values):
    """The tokens of `order` put back into the prompt in that order, each in the place where
    one of them stood."""
    missing = [token for token in order if token not in p.prompt]
    if missing:
        raise ValueError(f"Prompt order: {missing[0]!r} is not in the prompt")
    rest, pieces = p.prompt, []
    for _, token in sorted((p.prompt.find(token), token) for token in order):
        at = rest.find(token)
        pieces.append(rest[:at])
        rest = rest[at + len(token):]
    p.prompt = "".join(piece + token for piece, token in zip(pieces, order)) + rest


def confirm_samplers(p, values):
    for value in values:
        if str(value).lower() not in sd_samplers.samplers_map:
            raise ValueError(f"Unknown sampler: {value}")


def confirm_schedulers(p, values):
    known = {name.lower() for s in sd_schedulers.schedulers
             for name in (s.name, s.label, *(s.aliases or ()))}
    for value in values:
        if str(value).lower() not in known:
            raise ValueError(f"Unknown schedule type: {value}")


def _checkpoint(name):
    info = sd_models.get_closest_checkpoint_match(name)
    if info is None:
        raise ValueError(f"Unknown checkpoint: {name}")
    return info


def apply_checkpoint(p, value, values):
    p.override_settings["sd_model_checkpoint"] = _checkpoint(value).title


def confirm_checkpoints(p, values):
    for value in values:
        _checkpoint(value)


def confirm_checkpoints_or_none(p, values):
    for value in values:
        if value not in (None, "", "None", "none"):
            _checkpoint(value)


def apply_refiner(p, value, values):
    p.refiner_checkpoint = None if value in (None, "", "None", "none") else \
        _checkpoint(value).title


def find_vae(name):
    """'Automatic' / 'None' / the shortest VAE file name containing `name`."""
    wanted = name.strip().lower()
    if wanted in ("auto", "automatic"):
        return sd_vae.unspecified
    if wanted == "none":
        return "None"
    matches = sorted((vae for vae in sd_vae.vae_dict if wanted in vae.lower()), key=len)
    if not matches:
        raise ValueError(f"Unknown VAE: {name}")
    return matches[0]


def apply_vae(p, value, values):
    p.override_settings["sd_vae"] = find_vae(value)


def confirm_vaes(p, values):
    for value in values:
        find_vae(value)


def apply_styles(p, value, values):
    p.styles.extend(style.strip() for style in value.split(",") if style.strip())


def apply_uni_pc_order(p, value, values):
    p.override_settings["uni_pc_order"] = min(value, p.steps - 1)


def apply_face_restore(p, value, values):
    choice = str(value).strip().lower()
    if choice in ("codeformer", "gfpgan"):
        p.face_restoration_model = "CodeFormer" if choice == "codeformer" else "GFPGAN"
        p.restore_faces = True
    else:
        p.restore_faces = choice in ("true", "yes", "y", "1")


def apply_size(p, value, values):
    width, _, height = str(value).lower().partition("x")
    try:
        p.width, p.height = int(width.strip()), int(height.strip())
    except ValueError:
        raise ValueError(f"Size: {value!r} is not WIDTHxHEIGHT (e.g. 512x768)") from None


def do_nothing(p, value, values):
    pass


# -- how a value is shown in the legend ----------------------------------------------------------
def format_value_add_label(p, option, value):
    return f"{option.label}: {round(value, 8) if isinstance(value, float) else value}"


def format_value(p, option, value):
    return round(value, 8) if isinstance(value, float) else value


def format_value_join_list(p, option, value):
    return ", ".join(value)


def format_nothing(p, option, value):
    return ""


def format_remove_path(p, option, value):
    return os.path.basename(value)


def str_permutations(value):
    """The type of an axis whose values are all orders of its list (Prompt order)."""
    return value


def boolean_choice(reverse=False):
    return lambda: ["False", "True"] if reverse else ["True", "False"]


class AxisOption:
    def __init__(self, label, type, apply, format_value=format_value_add_label, confirm=None,
                 cost=0.0, choices=None, prepare=None):
        self.label = label
        self.type = type
        self.apply = apply
        self.format_value = format_value
        self.confirm = confirm
        self.cost = cost          # switching it is slow (a checkpoint): looped over outermost
        self.prepare = prepare
        self.choices = choices


class AxisOptionImg2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = True


class AxisOptionTxt2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = False


def _sampler_names():
    hidden = set(shared.opts.hide_samplers or []) if shared.opts is not None else set()
    return [name for name in sd_samplers.visible_sampler_names() if name not in hidden]


def _checkpoint_titles():
    return sorted(sd_models.checkpoints_list, key=str.casefold)


def _hires_upscalers():
    return [*shared.latent_upscale_modes, *[upscaler.name for upscaler in shared.sd_upscalers]]


axis_options = [
    AxisOption("Nothing", str, do_nothing, format_value=format_nothing),
    AxisOption("Seed", int, apply_field("seed")),
    AxisOption("Var. seed", int, apply_field("subseed")),
    AxisOption("Var. strength", float, apply_field("subseed_strength")),
    AxisOption("Steps", int, apply_field("steps")),
    AxisOptionTxt2Img("Hires steps", int, apply_field("hr_second_pass_steps")),
    AxisOption("CFG Scale", float, apply_field("cfg_scale")),
    AxisOptionImg2Img("Image CFG Scale", float, apply_field("image_cfg_scale")),
    AxisOption("Prompt S/R", str, apply_prompt, format_value=format_value),
    AxisOption("Prompt order", str_permutations, apply_order,
               format_value=format_value_join_list),
    AxisOptionTxt2Img("Sampler", str, apply_field("sampler_name"), format_value=format_value,
                      confirm=confirm_samplers, choices=_sampler_names),
    AxisOptionTxt2Img("Hires sampler", str, apply_field("hr_sampler_name"),
                      confirm=confirm_samplers, choices=_sampler_names),
    AxisOptionImg2Img("Sampler", str, apply_field("sampler_name"), format_value=format_value,
                      confirm=confirm_samplers, choices=_sampler_names),
    AxisOption("Checkpoint name", str, apply_checkpoint, format_value=format_remove_path,
               confirm=confirm_checkpoints, cost=1.0, choices=_checkpoint_titles),
    AxisOption("Negative Guidance minimum sigma", float, apply_field("s_min_uncond")),
    AxisOption("Sigma Churn", float, apply_field("s_churn")),
    AxisOption("Sigma min", float, apply_field("s_tmin")),
    AxisOption("Sigma max", float, apply_field("s_tmax")),
    AxisOption("Sigma noise", float, apply_field("s_noise")),
    AxisOption("Schedule type", str, apply_field("scheduler"), confirm=confirm_schedulers,
               choices=lambda: [scheduler.label for scheduler in sd_schedulers.schedulers]),
    AxisOption("Schedule min sigma", float, apply_override("sigma_min")),
    AxisOption("Schedule max sigma", float, apply_override("sigma_max")),
    AxisOption("Schedule rho", float, apply_override("rho")),
    AxisOption("Beta schedule alpha", float, apply_override("beta_dist_alpha")),
    AxisOption("Beta schedule beta", float, apply_override("beta_dist_beta")),
    AxisOption("Eta", float, apply_field("eta")),
    AxisOption("Clip skip", int, apply_override("CLIP_stop_at_last_layers")),
    AxisOption("Denoising", float, apply_field("denoising_strength")),
    AxisOption("Initial noise multiplier", float, apply_field("initial_noise_multiplier")),
    AxisOption("Extra noise", float, apply_override("img2img_extra_noise")),
    AxisOptionTxt2Img("Hires upscaler", str, apply_field("hr_upscaler"),
                      choices=_hires_upscalers),
    AxisOptionImg2Img("Cond. Image Mask Weight", float, apply_field("inpainting_mask_weight")),
    AxisOption("VAE", str, apply_vae, confirm=confirm_vaes, cost=0.7,
               choices=lambda: ["Automatic", "None", *sd_vae.vae_dict]),
    AxisOption("Styles", str, apply_styles,
               choices=lambda: list(shared.prompt_styles.styles)),
    AxisOption("UniPC Order", int, apply_uni_pc_order, cost=0.5),
    AxisOption("Face restore", str, apply_face_restore, format_value=format_value),
    AxisOption("Token merging ratio", float, apply_override("token_merging_ratio")),
    AxisOption("Token merging ratio high-res", float, apply_override("token_merging_ratio_hr")),
    AxisOption("Always discard next-to-last sigma", str,
               apply_override("always_discard_next_to_last_sigma", boolean=True),
               choices=boolean_choice(reverse=True)),
    AxisOption("SGM noise multiplier", str, apply_override("sgm_noise_multiplier", boolean=True),
               choices=boolean_choice(reverse=True)),
    AxisOption("Refiner checkpoint", str, apply_refiner, format_value=format_remove_path,
               confirm=confirm_checkpoints_or_none, cost=1.0,
               choices=lambda: ["None", *_checkpoint_titles()]),
    AxisOption("Refiner switch at", float, apply_field("refiner_switch_at")),
    AxisOption("RNG source", str, apply_override("randn_source"),
               choices=lambda: ["GPU", "CPU", "NV"]),
    AxisOption("FP8 mode", str, apply_override("fp8_storage"), cost=0.9,
               choices=lambda: ["Disable", "Enable for SDXL", "Enable"]),
    AxisOption("Size", str, apply_size),
    # ours, after A1111's list
    AxisOptionTxt2Img("Hires scale", float, apply_field("hr_scale")),
]


def axes_for(is_img2img):
    """The axes of one tab, in the order the type indices count."""
    return [option for option in axis_options
            if getattr(option, "is_img2img", is_img2img) == is_img2img]


# -- script arguments ----------------------------------------------------------------------------
ARG_NAMES = ("x_type", "x_values", "x_values_dropdown", "y_type", "y_values",
             "y_values_dropdown", "z_type", "z_values", "z_values_dropdown", "draw_legend",
             "include_lone_images", "include_sub_grids", "no_fixed_seeds", "vary_seeds_x",
             "vary_seeds_y", "vary_seeds_z", "margin_size", "csv_mode")
#: A1111 1.6-1.7 (and the webuiapi README): no vary_seeds_* and no csv_mode
LEGACY_ARG_NAMES = ARG_NAMES[:13] + ("margin_size",)
ARG_DEFAULTS = {"x_type": 1, "x_values": "", "x_values_dropdown": [], "y_type": 0,
                "y_values": "", "y_values_dropdown": [], "z_type": 0, "z_values": "",
                "z_values_dropdown": [], "draw_legend": True, "include_lone_images": False,
                "include_sub_grids": False, "no_fixed_seeds": False, "vary_seeds_x": False,
                "vary_seeds_y": False, "vary_seeds_z": False, "margin_size": 0,
                "csv_mode": False}


def truthy(value):
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def read_args(args):
    names = LEGACY_ARG_NAMES if len(args) == len(LEGACY_ARG_NAMES) else ARG_NAMES
    values = dict(ARG_DEFAULTS)
    values.update(zip(names, args))
    for name in ("draw_legend", "include_lone_images", "include_sub_grids", "no_fixed_seeds",
                 "vary_seeds_x", "vary_seeds_y", "vary_seeds_z", "csv_mode"):
        values[name] = truthy(values[name])
    values["margin_size"] = int(float(values["margin_size"] or 0))
    return values


def find_axis(options, chosen, axis_name):
    """An axis by its index (what the UI and A1111's API send) or its label."""
    if isinstance(chosen, str) and not chosen.strip().lstrip("-").isdigit():
        for option in options:
            if option.label.lower() == chosen.strip().lower():
                return option
        raise ValueError(f"{axis_name} type {chosen!r} is not an axis of this tab")
    index = int(chosen if chosen not in (None, "") else 0)
    if not 0 <= index < len(options):
        raise ValueError(f"{axis_name} type {index} is not an axis index (0-{len(options) - 1})")
    return options[index]


def axis_values(p, option, text, dropdown, csv_mode):
    """The values of one axis, checked (unknown samplers, checkpoints… are refused up front)."""
    if option.label == "Nothing":
        return [0]
    use_dropdown = option.choices is not None and not csv_mode and isinstance(dropdown, list) \
        and dropdown
    values = parse_axis_values(list(dropdown) if use_dropdown else (text or ""),
                               option.type, label=option.label,
                               permutations=option.type is str_permutations)
    if not values:
        raise ValueError(f"{option.label}: no values given")
    if option.confirm is not None:
        option.confirm(p, values)
    return values


def fix_axis_seeds(option, values):
    """-1 (or empty) on a seed axis becomes one random seed, shown in the legend."""
    if option.label not in ("Seed", "Var. seed"):
        return values
    return [random.randrange(4294967294) if value in (None, "", -1) else value
            for value in values]


# -- the grid ------------------------------------------------------------------------------------
def _labels(texts):
    """Legend entries; none at all when an axis is unused (no margin is drawn for it)."""
    return [[GridAnnotation(str(text))] if str(text) else [] for text in texts]


def draw_grids(cells, xs_labels, ys_labels, zs_labels, *, legend, margin):
    """One labelled X×Y grid per Z value, and those side by side under their Z labels."""
    columns, rows = len(xs_labels), len(ys_labels)
    cell_width, cell_height = cells[0].size
    sub_grids = []
    for z in range(len(zs_labels)):
        part = cells[z * columns * rows:(z + 1) * columns * rows]
        grid = grid_with_margin(part, columns, rows, margin)
        if legend:
            grid = draw_grid_annotations(grid, cell_width, cell_height, _labels(xs_labels),
                                         _labels(ys_labels), margin)
        sub_grids.append(grid)
    grid = grid_with_margin(sub_grids, len(sub_grids), 1, margin)
    if legend:
        grid = draw_grid_annotations(grid, sub_grids[0].width, sub_grids[0].height,
                                     _labels(zs_labels), [], margin)
    return grid, sub_grids


class Script(scripts.Script):
    def title(self):
        return "X/Y/Z plot"

    def ui(self, is_img2img):
        self.current_axis_options = axes_for(is_img2img)
        labels = [option.label for option in self.current_axis_options]
        axes = {}
        for axis, default in (("x", 1), ("y", 0), ("z", 0)):
            with gr.Row():
                axis_type = gr.Dropdown(labels, value=labels[default], type="index",
                                        label=f"{axis.upper()} type",
                                        elem_id=self.elem_id(f"{axis}_type"))
                values = gr.Textbox(label=f"{axis.upper()} values", lines=1,
                                    elem_id=self.elem_id(f"{axis}_values"))
                values_dropdown = gr.Dropdown(label=f"{axis.upper()} values", visible=False,
                                              multiselect=True, interactive=True,
                                              elem_id=self.elem_id(f"{axis}_values_dropdown"))
                fill = ToolButton(value=FILL_SYMBOL, visible=False,
                                  elem_id=self.elem_id(f"fill_{axis}_tool_button"))
            axes[axis] = (axis_type, values, values_dropdown, fill)
        with gr.Row(variant="compact", elem_id="axis_options"):
            with gr.Column():
                draw_legend = gr.Checkbox(label="Draw legend", value=True,
                                          elem_id=self.elem_id("draw_legend"))
                no_fixed_seeds = gr.Checkbox(label="Keep -1 for seeds", value=False,
                                             elem_id=self.elem_id("no_fixed_seeds"))
                with gr.Row():
                    vary_seeds = [gr.Checkbox(label=f"Vary seeds for {axis.upper()}",
                                              value=False,
                                              elem_id=self.elem_id(f"vary_seeds_{axis}"))
                                  for axis in "xyz"]
            with gr.Column():
                include_lone_images = gr.Checkbox(label="Include Sub Images", value=False,
                                                  elem_id=self.elem_id("include_lone_images"))
                include_sub_grids = gr.Checkbox(label="Include Sub Grids", value=False,
                                                elem_id=self.elem_id("include_sub_grids"))
                csv_mode = gr.Checkbox(label="Use text inputs instead of dropdowns",
                                       value=False, elem_id=self.elem_id("csv_mode"))
            with gr.Column():
                margin_size = gr.Slider(label="Grid margins (px)", minimum=0, maximum=500,
                                        value=0, step=2, elem_id=self.elem_id("margin_size"))
        self._wire_axes(axes, csv_mode)
        x, y, z = (axes[axis][:3] for axis in "xyz")
        return [*x, *y, *z, draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds,
                *vary_seeds, margin_size, csv_mode]

    def _wire_axes(self, axes, csv_mode):
        options = self.current_axis_options

        def show(index, chosen, use_text):
            """An axis with choices edits its values in a dropdown, unless CSV mode is on."""
            option = options[index or 0]
            choices = option.choices() if option.choices is not None else None
            dropdown = choices is not None and not use_text
            kept = [value for value in (chosen or []) if choices and value in choices]
            # the text box keeps whatever the user typed meanwhile: no value is sent back to it
            return (gr.update(visible=not dropdown),
                    gr.update(choices=choices or [], value=kept, visible=dropdown),
                    gr.update(visible=choices is not None))

        def fill(index, use_text):
            option = options[index or 0]
            choices = option.choices() if option.choices is not None else []
            return (gr.update(value=join_values(choices)) if use_text else gr.skip(),
                    gr.skip() if use_text else gr.update(value=choices))

        for axis_type, values, values_dropdown, fill_button in axes.values():
            axis_type.change(show, inputs=[axis_type, values_dropdown, csv_mode],
                             outputs=[values, values_dropdown, fill_button])
            csv_mode.change(show, inputs=[axis_type, values_dropdown, csv_mode],
                            outputs=[values, values_dropdown, fill_button])
            fill_button.click(fill, inputs=[axis_type, csv_mode],
                              outputs=[values, values_dropdown])

    def run(self, p, *args):
        settings = read_args(args)
        options = getattr(self, "current_axis_options", None) or axes_for(self.is_img2img)
        if not settings["no_fixed_seeds"]:
            fix_seed(p)
        if shared.opts is not None and not shared.opts.return_grid:
            p.batch_size = 1
        chosen, values = {}, {}
        for axis in "xyz":
            option = find_axis(options, settings[f"{axis}_type"], axis.upper())
            found = axis_values(p, option, settings[f"{axis}_values"],
                                settings[f"{axis}_values_dropdown"], settings["csv_mode"])
            chosen[axis] = option
            values[axis] = found if settings["no_fixed_seeds"] else fix_axis_seeds(option, found)
        self._check_grid_size(p, values)
        return self._plot(p, settings, chosen, values)

    @staticmethod
    def _check_grid_size(p, values):
        cells = len(values["x"]) * len(values["y"]) * len(values["z"])
        megapixels = cells * p.width * p.height / 1_000_000
        limit = float(shared.opts.img_max_size_mp or 200) if shared.opts is not None else 200
        if megapixels > limit:
            raise ValueError(f"The grid would be too large: {cells} images of "
                             f"{p.width}x{p.height} are {megapixels:.0f} megapixels, above the "
                             f"limit of {limit:g} (setting 'Maximum grid size in megapixels')")

    def _plot(self, p, settings, chosen, values):
        xs, ys, zs = values["x"], values["y"], values["z"]
        counts = {"x": len(xs), "y": len(ys), "z": len(zs)}
        total = counts["x"] * counts["y"] * counts["z"]
        shared.state.job_count = total * p.n_iter
        # the costly axes (a checkpoint switch) change least often
        order = sorted("zyx", key=lambda axis: -chosen[axis].cost)
        cells, infotexts = [None] * total, [None] * total
        prompts, seeds = [None] * total, [None] * total
        template = None
        for done, position in enumerate(itertools.product(*(range(counts[a]) for a in order))):
            index = dict(zip(order, position))
            ix, iy, iz = index["x"], index["y"], index["z"]
            at = ix + iy * counts["x"] + iz * counts["x"] * counts["y"]
            shared.state.job = f"{done + 1} out of {total}"
            processed = None if shared.state.interrupted else \
                self._cell(p, settings, chosen, values, (ix, iy, iz))
            if processed is not None and processed.images:
                template = template or processed
                cells[at], infotexts[at] = processed.images[0], processed.infotexts[0]
                prompts[at], seeds[at] = processed.prompt, processed.seed
        if template is None:
            return Processed(p, [])
        size, mode = template.images[0].size, template.images[0].mode
        cells = [cell if cell is not None else Image.new(mode, size) for cell in cells]
        return self._result(p, settings, chosen, values, template, cells, infotexts, prompts,
                            seeds)

    @staticmethod
    def _cell(p, settings, chosen, values, indices):
        pc = copy.copy(p)
        pc.styles = list(p.styles or [])
        pc.override_settings = dict(p.override_settings or {})
        pc.extra_generation_params = dict(p.extra_generation_params or {})
        for axis, position in zip("xyz", indices):
            chosen[axis].apply(pc, values[axis][position], values[axis])
        stride = 1      # A1111: seed + ix, + iy · (len(xs) if X varies), + iz · …
        for axis, position in zip("xyz", indices):
            if settings[f"vary_seeds_{axis}"]:
                pc.seed += position * stride
                stride *= len(values[axis])
        return process_images(pc)

    def _result(self, p, settings, chosen, values, template, cells, infotexts, prompts, seeds):
        labels = {axis: [chosen[axis].format_value(p, chosen[axis], value)
                         for value in values[axis]] for axis in "xyz"}
        grid, sub_grids = draw_grids(cells, labels["x"], labels["y"], labels["z"],
                                     legend=settings["draw_legend"],
                                     margin=settings["margin_size"])
        grid_info = self._grid_infotext(infotexts[0] or template.infotexts[0], settings, chosen,
                                        values)
        z_count = len(sub_grids)
        per_z = len(cells) // z_count
        grid_images = [grid] + (sub_grids if settings["include_sub_grids"] else [])
        grid_infos = [grid_info] + ([infotexts[z * per_z] for z in range(z_count)]
                                    if settings["include_sub_grids"] else [])
        lone = settings["include_lone_images"]
        result = Processed(p, grid_images + (cells if lone else []),
                           all_prompts=[prompt for prompt in prompts if prompt is not None],
                           all_seeds=[seed for seed in seeds if seed is not None],
                           infotexts=grid_infos + (infotexts if lone else []),
                           index_of_first_image=len(grid_images), seed=template.seed)
        if shared.opts is not None and shared.opts.grid_save:
            for image, info in zip(grid_images, grid_infos):
                images.save_image(image, p.outpath_grids, "xyz_grid", info=info,
                                  extension=shared.opts.grid_format, prompt=template.prompt,
                                  seed=template.seed, grid=True, p=p)
        return result

    def _grid_infotext(self, cell_info, settings, chosen, values):
        """The first cell's infotext and what the plot was made of (A1111's keys)."""
        extra = {"Script": self.title()}
        for axis in "xyz":
            option = chosen[axis]
            if option.label == "Nothing":
                continue
            name = axis.upper()
            extra[f"{name} Type"] = option.label
            extra[f"{name} Values"] = settings[f"{axis}_values"] or \
                join_values(settings[f"{axis}_values_dropdown"] or [])
            if option.label in ("Seed", "Var. seed") and not settings["no_fixed_seeds"]:
                extra[f"Fixed {name} Values"] = ", ".join(str(value) for value in values[axis])
        return cell_info + "".join(f", {key}: {quote(value)}" for key, value in extra.items())

