"""The Train tab: create an embedding or a hypernetwork, preprocess a folder of pictures, and
train either on a folder of images, as A1111's tab does. Training runs as a job: the bar shows the
step and loss, the live preview the latest preview image, and Interrupt stops it at the next step
(the file keeps its last save)."""
from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING, Any, Iterator

import gradio as gr

from modules.app.training_service import (create_embedding_here, run_embedding_training,
                                          run_hypernetwork_training, run_preprocess,
                                          trainable_embeddings)
from modules.engine.embedding_training import CLIP_MODES
from modules.engine.hypernetwork import ACTIVATIONS
from modules.engine.training_files import DEFAULT_SIZES, WEIGHT_INITS
from modules.processing.embedding_training import SAMPLING_METHODS, EmbeddingTrainingRequest
from modules.processing.preprocess import CAPTION_MODES, PreprocessRequest
from modules.processing.training_create import create_hypernetwork
from modules.ui.progress import PROGRESS_POLL_SECONDS, interrupt_job, progress_view, \
    stream_job_progress

if TYPE_CHECKING:
    from modules.app.context import AppContext

log = logging.getLogger(__name__)
REFRESH_SYMBOL = "\U0001f504"  # 🔄

#: the Train sub-tab's fields, in the order of its inputs
TRAIN_FIELDS = ("embedding_name", "hypernetwork_name", "learn_rate", "hypernetwork_learn_rate",
                "batch_size", "gradient_step", "data_root",
                "log_directory", "template_filename", "training_width", "training_height",
                "varsize", "steps", "clip_grad_mode", "clip_grad_value", "shuffle_tags",
                "tag_drop_out", "latent_sampling_method", "create_image_every",
                "save_embedding_every")


def message_html(text: str, *, error: bool = False) -> str:
    css = "error" if error else "info"
    return f"<p class='train-{css}'>{html.escape(text)}</p>"


def create_embedding_action(ctx: "AppContext", name: str, init_text: str, vectors: float,
                            overwrite: bool) -> tuple[str, Any]:
    try:
        path = ctx.jobs.run("create_embedding", lambda progress: create_embedding_here(
            ctx, name, num_vectors_per_token=int(vectors), overwrite_old=bool(overwrite),
            init_text=init_text))
    except Exception as error:  # noqa: BLE001 - shown in the tab
        return message_html(f"Could not create the embedding: {error}", error=True), gr.skip()
    return (message_html(f"Created embedding: {path}"),
            gr.update(choices=trainable_embeddings(ctx), value=path.stem))


def hypernetwork_names(ctx: "AppContext") -> list[str]:
    library = getattr(ctx, "hypernetworks", None)
    return sorted(path.stem for path in library.files()) if library is not None else []


def create_hypernetwork_action(ctx: "AppContext", name: str, sizes: list[str], structure: str,
                               activation: str, weight_init: str, layer_norm: bool,
                               dropout: bool, dropout_structure: str,
                               overwrite: bool) -> tuple[str, Any]:
    try:
        path = create_hypernetwork(
            ctx.paths.hypernetwork_dir, name, enable_sizes=[int(size) for size in sizes],
            overwrite_old=bool(overwrite), layer_structure=structure,
            activation_func=activation, weight_init=weight_init, add_layer_norm=layer_norm,
            use_dropout=dropout, dropout_structure=dropout_structure or None)
    except Exception as error:  # noqa: BLE001 - shown in the tab
        return message_html(f"Could not create the hypernetwork: {error}", error=True), gr.skip()
    return (message_html(f"Created hypernetwork: {path}"),
            gr.update(choices=hypernetwork_names(ctx), value=path.stem))


def preprocess_action(ctx: "AppContext", source: str, destination: str, *values: Any) -> str:
    names = ("width", "height", "existing_captions", "flip", "split", "split_threshold",
             "overlap_ratio", "focal_crop", "focal_face_weight", "focal_entropy_weight",
             "focal_edges_weight", "caption_blip", "caption_deepbooru")
    try:
        fields = dict(zip(names, values))
        fields["width"], fields["height"] = int(fields["width"]), int(fields["height"])
        request = PreprocessRequest(**fields)
        result = ctx.jobs.run("preprocess", lambda progress: run_preprocess(
            ctx, source or "", destination or "", request, progress))
    except Exception as error:  # noqa: BLE001 - shown in the tab
        return message_html(f"Preprocessing failed: {error}", error=True)
    text = f"Preprocessing finished: {len(result.written)} pictures in {destination}"
    extra = [*result.notes, *(f"left out {entry}" for entry in result.skipped)]
    return message_html(text + (f" ({'; '.join(extra)})" if extra else ""))


def train_action(ctx: "AppContext", kind: str, *values: Any,
                 poll_seconds: float = PROGRESS_POLL_SECONDS) -> Iterator[tuple[Any, ...]]:
    """Train the chosen embedding or hypernetwork (`kind`); yields (message, last preview, task
    id, progress bar, live preview) while it trains."""
    try:
        fields = dict(zip(TRAIN_FIELDS, values))
        if kind == "hypernetwork":
            fields["learn_rate"] = fields.pop("hypernetwork_learn_rate")
        request = EmbeddingTrainingRequest.from_api(fields)
        run = run_hypernetwork_training if kind == "hypernetwork" else run_embedding_training
        job = ctx.jobs.submit(f"train_{kind}", lambda progress: run(ctx, request, progress))
    except Exception as error:  # noqa: BLE001 - shown in the tab
        yield message_html(str(error), error=True), gr.skip(), "", "", None
        return
    yield from stream_job_progress(job, 2, poll_seconds=poll_seconds)
    try:
        result = job.wait()
    except Exception as error:  # noqa: BLE001 - shown in the tab
        yield message_html(f"Training failed: {error}", error=True), gr.skip(), job.id, "", None
        return
    loss = f", loss {result.losses[-1]:.5f}" if result.losses else ""
    how = f"interrupted at step {result.step}; the file keeps step {result.last_saved_step}" \
        if result.interrupted else f"trained to step {result.step}{loss}; saved {result.path}"
    if result.skipped:
        how += f" (left out: {'; '.join(result.skipped)})"
    preview = str(result.previews[-1]) if result.previews else gr.skip()
    name = request.hypernetwork_name if kind == "hypernetwork" else request.embedding_name
    yield message_html(f"{name}: {how}"), preview, job.id, "", None


def build_train_tab(ctx: "AppContext") -> None:
    templates = sorted(path.name for path in ctx.paths.templates_dir.glob("*.txt"))
    with gr.Tabs(elem_id="train_tabs"):
        with gr.Tab("Create embedding", id="train_create_embedding",
                    elem_id="train_create_embedding_tab"):
            name = gr.Textbox(label="Name", elem_id="train_embedding_name")
            init_text = gr.Textbox(label="Initialization text", value="*",
                                   elem_id="train_embedding_init_text")
            vectors = gr.Slider(1, 75, value=1, step=1, label="Number of vectors per token",
                                elem_id="train_embedding_vectors")
            overwrite = gr.Checkbox(label="Overwrite Old Embedding",
                                    elem_id="train_embedding_overwrite")
            create = gr.Button("Create embedding", variant="primary",
                               elem_id="train_create_embedding_button")
            create_result = gr.HTML(elem_id="train_create_embedding_result")
        with gr.Tab("Create hypernetwork", id="train_create_hypernetwork",
                    elem_id="train_create_hypernetwork_tab"):
            hn_name = gr.Textbox(label="Name", elem_id="train_hypernetwork_name")
            sizes = gr.CheckboxGroup([str(size) for size in DEFAULT_SIZES],
                                     value=[str(size) for size in DEFAULT_SIZES],
                                     label="Modules", elem_id="train_hypernetwork_sizes")
            structure = gr.Textbox("1, 2, 1", label="Hypernetwork layer structure",
                                   elem_id="train_hypernetwork_structure")
            activation = gr.Dropdown(list(ACTIVATIONS), value="linear",
                                     label="Activation function",
                                     elem_id="train_hypernetwork_activation")
            weight_init = gr.Dropdown(list(WEIGHT_INITS), value="Normal",
                                      label="Layer weights initialization",
                                      elem_id="train_hypernetwork_weight_init")
            layer_norm = gr.Checkbox(label="Add layer normalization")
            dropout = gr.Checkbox(label="Use dropout")
            dropout_structure = gr.Textbox("0, 0, 0", label="Dropout structure")
            hn_overwrite = gr.Checkbox(label="Overwrite Old Hypernetwork")
            hn_create = gr.Button("Create hypernetwork", variant="primary",
                                  elem_id="train_create_hypernetwork_button")
            hn_result = gr.HTML(elem_id="train_create_hypernetwork_result")
        with gr.Tab("Preprocess images", id="train_preprocess", elem_id="train_preprocess_tab"):
            source = gr.Textbox(label="Source directory", elem_id="train_preprocess_source")
            destination = gr.Textbox(label="Destination directory",
                                     elem_id="train_preprocess_destination")
            with gr.Row():
                pp_width = gr.Slider(64, 2048, value=512, step=8, label="Width",
                                     elem_id="train_preprocess_width")
                pp_height = gr.Slider(64, 2048, value=512, step=8, label="Height",
                                      elem_id="train_preprocess_height")
            existing = gr.Dropdown(list(CAPTION_MODES), value="ignore",
                                   label="Existing Caption txt Action")
            with gr.Row():
                pp_flip = gr.Checkbox(label="Create flipped copies")
                pp_split = gr.Checkbox(label="Split oversized images")
                pp_focal = gr.Checkbox(label="Auto focal point crop")
                pp_blip = gr.Checkbox(label="Use BLIP for caption")
                pp_booru = gr.Checkbox(label="Use deepbooru for caption")
            with gr.Row():
                pp_threshold = gr.Slider(0, 1, value=0.5, step=0.05, label="Split image threshold")
                pp_overlap = gr.Slider(0, 0.9, value=0.2, step=0.05,
                                       label="Split image overlap ratio")
            with gr.Row():
                pp_face = gr.Slider(0, 1, value=0.9, step=0.05, label="Focal point face weight")
                pp_entropy = gr.Slider(0, 1, value=0.15, step=0.05,
                                       label="Focal point entropy weight")
                pp_edges = gr.Slider(0, 1, value=0.5, step=0.05,
                                     label="Focal point edges weight")
            run_pp = gr.Button("Preprocess", variant="primary", elem_id="train_preprocess_run")
            pp_result = gr.HTML(elem_id="train_preprocess_result")
        with gr.Tab("Train", id="train_train", elem_id="train_train_tab"):
            with gr.Row():
                embedding = gr.Dropdown(trainable_embeddings(ctx), label="Embedding",
                                        elem_id="train_embedding")
                hypernetwork = gr.Dropdown(hypernetwork_names(ctx), label="Hypernetwork",
                                           elem_id="train_hypernetwork")
                refresh = gr.Button(REFRESH_SYMBOL, min_width=40, scale=0,
                                    elem_id="train_refresh_embeddings")
            with gr.Row():
                learn_rate = gr.Textbox("0.005", label="Embedding Learning rate",
                                        elem_id="train_learn_rate")
                hn_learn_rate = gr.Textbox("0.00001", label="Hypernetwork Learning rate",
                                           elem_id="train_hypernetwork_learn_rate")
            with gr.Row():
                batch_size = gr.Number(1, label="Batch size", precision=0)
                gradient_step = gr.Number(1, label="Gradient accumulation steps", precision=0)
            data_root = gr.Textbox(label="Dataset directory", elem_id="train_dataset_directory")
            log_directory = gr.Textbox("textual_inversion", label="Log directory",
                                       elem_id="train_log_directory")
            template = gr.Dropdown(templates, value="style_filewords.txt"
                                   if "style_filewords.txt" in templates else None,
                                   label="Prompt template", elem_id="train_template")
            with gr.Row():
                width = gr.Slider(64, 2048, value=512, step=8, label="Width",
                                  elem_id="train_width")
                height = gr.Slider(64, 2048, value=512, step=8, label="Height",
                                   elem_id="train_height")
            varsize = gr.Checkbox(label="Do not resize images")
            steps = gr.Number(100000, label="Max steps", precision=0, elem_id="train_steps")
            with gr.Row():
                create_image_every = gr.Number(500, precision=0, elem_id="train_image_every",
                                               label="Save an image to log directory every N "
                                                     "steps, 0 to disable")
                save_every = gr.Number(500, precision=0, elem_id="train_save_every",
                                       label="Save a copy of embedding to log directory every N "
                                             "steps, 0 to disable")
            with gr.Row():
                clip_mode = gr.Radio(list(CLIP_MODES), value="disabled",
                                     label="Gradient Clipping")
                clip_value = gr.Textbox("0.1", show_label=False)
            shuffle_tags = gr.Checkbox(label="Shuffle tags by ',' when creating prompts.")
            tag_drop_out = gr.Slider(0, 0.99, value=0, step=0.01,
                                     label="Drop out tags when creating prompts.")
            sampling = gr.Radio(list(SAMPLING_METHODS), value="once",
                                label="Choose latent sampling method")
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id="train_interrupt")
                train_hn = gr.Button("Train Hypernetwork", variant="primary",
                                     elem_id="train_train_hypernetwork")
                train = gr.Button("Train Embedding", variant="primary",
                                  elem_id="train_train_embedding")
            view = progress_view("train")
            train_result = gr.HTML(elem_id="train_result")
            last_preview = gr.Image(label="Last preview", type="filepath", interactive=False,
                                    elem_id="train_last_preview", height=256)

    create.click(lambda *v: create_embedding_action(ctx, *v),
                 inputs=[name, init_text, vectors, overwrite],
                 outputs=[create_result, embedding], api_visibility="private")
    hn_create.click(lambda *v: create_hypernetwork_action(ctx, *v),
                    inputs=[hn_name, sizes, structure, activation, weight_init, layer_norm,
                            dropout, dropout_structure, hn_overwrite],
                    outputs=[hn_result, hypernetwork], api_visibility="private")
    refresh.click(lambda current, current_hn: (
        gr.update(choices=trainable_embeddings(ctx), value=current),
        gr.update(choices=hypernetwork_names(ctx), value=current_hn)),
        inputs=[embedding, hypernetwork], outputs=[embedding, hypernetwork],
        api_visibility="private")
    run_pp.click(lambda *v: preprocess_action(ctx, *v),
                 inputs=[source, destination, pp_width, pp_height, existing, pp_flip, pp_split,
                         pp_threshold, pp_overlap, pp_focal, pp_face, pp_entropy, pp_edges,
                         pp_blip, pp_booru],
                 outputs=[pp_result], api_visibility="private")
    train_inputs = [embedding, hypernetwork, learn_rate, hn_learn_rate, batch_size,
                    gradient_step, data_root, log_directory, template, width, height,
                    varsize, steps, clip_mode, clip_value, shuffle_tags, tag_drop_out,
                    sampling, create_image_every, save_every]

    def run_embedding(*values: Any) -> Iterator[tuple[Any, ...]]:
        yield from train_action(ctx, "embedding", *values)

    def run_hypernetwork(*values: Any) -> Iterator[tuple[Any, ...]]:
        yield from train_action(ctx, "hypernetwork", *values)

    for button, run in ((train, run_embedding), (train_hn, run_hypernetwork)):
        button.click(run, inputs=train_inputs,
                     outputs=[train_result, last_preview, *view.outputs],
                     api_visibility="private")
    interrupt.click(lambda task_id: interrupt_job(ctx.jobs, task_id) and None,
                    inputs=[view.task_id], outputs=[], show_progress="hidden",
                    api_visibility="private", queue=False)
