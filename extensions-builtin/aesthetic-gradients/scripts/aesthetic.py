"""Aesthetic gradients, built in (the fields, infotext and "Create aesthetic embedding" tab of
A1111's aesthetic-gradients extension), on the public Script API.

With an embedding chosen and weight, steps and learning rate all non-zero, every prompt chunk the
job encodes (negative prompts too, as in A1111) goes through a copy of the user's CLIP text tower
trained towards the embedding, and the result is blended into the model's conditioning
(`p.text_encoder_output_hooks`). The loaded model is never changed. The CLIP is the interrogator's
(models/interrogate or --clip-models-path); its text tower must be the model's (SD1.x: ViT-L/14).
"""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from lib_aesthetic.library import NONE, AestheticEmbeddings, clip_image_encoder
from modules import call_queue, paths, script_callbacks, scripts, shared
from modules.engine.aesthetic_clip import (AestheticError, AestheticSettings, blend,
                                           check_text_tower_fits, tuned_conditioning)
from modules.processing.interrogation import InterrogationError
from modules.scripting.runner import ScriptArgsError

TITLE = "Aesthetic embeddings"
INFOTEXT_KEYS = ("Aesthetic LR", "Aesthetic weight", "Aesthetic steps", "Aesthetic embedding",
                 "Aesthetic slerp", "Aesthetic text", "Aesthetic text negative",
                 "Aesthetic slerp angle")
_libraries: dict[Path, AestheticEmbeddings] = {}
_dropdowns: list = []


def embeddings_folder() -> Path:
    flag = getattr(shared.cmd_opts, "aesthetic_embeddings_dir", None)
    return Path(flag) if flag else Path(paths.models_path) / "aesthetic_embeddings"


def library() -> AestheticEmbeddings:
    folder = embeddings_folder()
    if folder not in _libraries:
        _libraries[folder] = AestheticEmbeddings(
            folder, allow_unsafe_pickle=bool(getattr(shared.cmd_opts, "disable_safe_unpickle",
                                                     False)))
    return _libraries[folder]


def clip_model():
    interrogator = shared.interrogator
    if interrogator is None:
        raise AestheticError("aesthetic gradients need the application's CLIP interrogator")
    try:
        return interrogator.clip_model()
    except InterrogationError as error:
        raise AestheticError(f"aesthetic gradients need a CLIP model: {error}") from error


def settings_of(weight, steps, learning_rate, use_slerp, text, slerp_angle,
                text_negative) -> AestheticSettings:
    try:
        return AestheticSettings(weight=float(weight), steps=int(steps),
                                 learning_rate=float(learning_rate), slerp=bool(use_slerp),
                                 text=str(text or ""), slerp_angle=float(slerp_angle),
                                 text_negative=bool(text_negative))
    except (TypeError, ValueError) as error:
        raise ScriptArgsError(f"Aesthetic embeddings: a setting is not a number ({error})") \
            from error


class AestheticScript(scripts.Script):
    def title(self):
        return TITLE

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        tab = "img2img" if is_img2img else "txt2img"
        with gr.Accordion("Open for Clip Aesthetic!", open=False, elem_id=f"{tab}_aesthetic"):
            with gr.Row():
                weight = gr.Slider(minimum=0, maximum=1, step=0.01, value=0.9,
                                   label="Aesthetic weight", elem_id=f"{tab}_aesthetic_weight")
                steps = gr.Slider(minimum=0, maximum=50, step=1, value=5,
                                  label="Aesthetic steps", elem_id=f"{tab}_aesthetic_steps")
            with gr.Row():
                learning_rate = gr.Textbox(value="0.0001", label="Aesthetic learning rate",
                                           elem_id=f"{tab}_aesthetic_lr")
                use_slerp = gr.Checkbox(value=False, label="Slerp interpolation",
                                        elem_id=f"{tab}_aesthetic_slerp")
                embedding = gr.Dropdown(choices=library().names(), value=NONE,
                                        label="Aesthetic imgs embedding",
                                        elem_id=f"{tab}_aesthetic_imgs")
                refresh = gr.Button("\U0001f504", elem_id=f"{tab}_aesthetic_refresh",
                                    scale=0, min_width=40)
            with gr.Row():
                text = gr.Textbox(value="", label="Aesthetic text for imgs",
                                  placeholder="This text is used to rotate the feature space "
                                              "of the imgs embs", elem_id=f"{tab}_aesthetic_text")
                slerp_angle = gr.Slider(minimum=0, maximum=1, step=0.01, value=0.1,
                                        label="Slerp angle", elem_id=f"{tab}_aesthetic_angle")
                text_negative = gr.Checkbox(value=False, label="Is negative text",
                                            elem_id=f"{tab}_aesthetic_text_negative")
        refresh.click(lambda: gr.Dropdown(choices=library().names()), outputs=[embedding])
        _dropdowns.append(embedding)
        controls = [weight, steps, learning_rate, use_slerp, embedding, text, slerp_angle,
                    text_negative]
        order = [learning_rate, weight, steps, embedding, use_slerp, text, text_negative,
                 slerp_angle]
        self.infotext_fields = list(zip(order, INFOTEXT_KEYS))
        return controls

    def process(self, p, weight=0.9, steps=5, learning_rate="0.0001", use_slerp=False,
                embedding_name=NONE, text="", slerp_angle=0.1, text_negative=False):
        if not embedding_name or embedding_name == NONE:
            return
        settings = settings_of(weight, steps, learning_rate, use_slerp, text, slerp_angle,
                               text_negative)
        try:
            embedding = library().load(str(embedding_name))
        except AestheticError as error:
            raise ScriptArgsError(str(error)) from error
        p.extra_generation_params.update(dict(zip(INFOTEXT_KEYS, (
            settings.learning_rate, settings.weight, settings.steps, str(embedding_name),
            settings.slerp, settings.text, settings.text_negative, settings.slerp_angle))))
        if not settings.active:
            return
        p.text_encoder_output_hooks.append(self._hook(p.sd_model, embedding, settings))

    @staticmethod
    def _hook(model, embedding, settings: AestheticSettings):
        """The job's hook: refused before any work when the model, the CLIP and the embedding do
        not fit together."""
        encoder = model.config.text_encoders[0][1] if model is not None else None
        if model is None or model.config.family != "sd1" or encoder.kind != "clip_l":
            raise ScriptArgsError("Aesthetic embeddings work on SD1.x models (a CLIP ViT-L "
                                  "text encoder)")
        try:
            ranker = clip_model()
            check_text_tower_fits(ranker.model, encoder.width)
        except AestheticError as error:
            raise ScriptArgsError(str(error)) from error
        projection = int(ranker.model.text_projection.shape[-1])
        if embedding.shape[-1] != projection:
            raise ScriptArgsError(f"the aesthetic embedding has {embedding.shape[-1]} values but "
                                  f"the CLIP's features {projection}: made with another CLIP")
        text_tokens = ranker.tokenizer([settings.text]) if settings.text else None
        clip_skip = int(getattr(shared.opts, "CLIP_stop_at_last_layers", 1) or 1)

        def hook(tokens, features, config):
            if config.kind != "clip_l" or features.shape[-1] != encoder.width:
                return features
            tuned = tuned_conditioning(ranker.model, tokens, embedding, settings,
                                       clip_skip=clip_skip, text_tokens=text_tokens)
            return blend(features, tuned, settings)
        return hook


def create_embedding(name: str, source: str, batch_size: float) -> str:
    """The "Create images embedding" button: the message shown under it."""
    try:
        folder = paths.allowed_folder(source or "", "Source directory")
        target, count, skipped = library().create(
            name, folder, clip_image_encoder(clip_model()), batch_size=int(batch_size),
            should_stop=lambda: shared.state.interrupted)
    except (AestheticError, ValueError) as error:
        return f"Error: {html.escape(str(error))}"
    note = f" ({len(skipped)} unreadable files left out)" if skipped else ""
    return (f"Done generating embedding for {target.stem} from {count} images{note}!\n"
            f"Aesthetic embedding saved to {target}")


def on_ui_tabs():
    with gr.Blocks(analytics_enabled=False) as interface:
        with gr.Row(equal_height=False):
            with gr.Column(variant="panel"):
                gr.HTML(value="Create an aesthetic embedding out of any number of images")
                name = gr.Textbox(label="Name", elem_id="aesthetic_new_name")
                source = gr.Textbox(label="Source directory", elem_id="aesthetic_source")
                batch_size = gr.Slider(minimum=1, maximum=1024, step=1, value=256,
                                       label="Batch size", elem_id="aesthetic_batch_size")
                create = gr.Button(value="Create images embedding", variant="primary",
                                   elem_id="aesthetic_create")
            with gr.Column():
                output = gr.Text(value="", show_label=False, elem_id="aesthetic_output")
        dropdowns = list(_dropdowns)

        def created(*args):
            message = call_queue.wrap_gradio_gpu_call(create_embedding)(*args)
            choices = library().names()
            return (*[gr.Dropdown(choices=choices) for _ in dropdowns], message)

        create.click(created, inputs=[name, source, batch_size], outputs=[*dropdowns, output])
    return [(interface, "Create aesthetic embedding", "aesthetic_interface")]


script_callbacks.on_ui_tabs(on_ui_tabs)
