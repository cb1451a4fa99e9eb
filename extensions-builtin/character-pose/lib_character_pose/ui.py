"""The "Character" tab (UI mode with --api): create a character, pick it in the gallery, choose
a pose (presets and yours, with the skeleton preview) and a control, re-pose, and see its
history. It drives the same `CharacterService` as the routes, through the app's API in-process;
the owner is the Gradio login (or nobody without --gradio-auth)."""
from __future__ import annotations

import asyncio
import base64
import io
from typing import Any, Callable

import gradio as gr
from PIL import Image

from lib_character_pose.client import ApiCallError, AppClient
from lib_character_pose.service import CONTROLS, CharacterService, ServiceError

SAMPLERS = ("Euler a", "Euler", "DPM++ 2M", "DDIM")


def _image(data: bytes | str) -> Image.Image:
    raw = base64.b64decode(data) if isinstance(data, str) else data
    return Image.open(io.BytesIO(raw)).convert("RGB")


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def build_tab(service_of: Callable[[], CharacterService | None],
              client_of: Callable[[], AppClient | None],
              preset_choices: list[tuple[str, str]]) -> gr.Blocks:
    """`preset_choices`: (name, id) of the preset poses (the service starts after the UI is
    built; the user's own poses join on refresh)."""
    def owner(request: gr.Request | None) -> str:
        return (getattr(request, "username", None) or "") if request is not None else ""

    def call(make: Callable[[CharacterService, AppClient], Any]) -> Any:
        service, client = service_of(), client_of()
        if service is None or client is None:
            raise gr.Error("The character service needs the API: start with --api")

        async def run() -> Any:
            async with client:
                return await make(service, client)
        try:
            return asyncio.run(run())
        except (ServiceError, ApiCallError) as error:
            raise gr.Error(getattr(error, "message", None) or str(error)) from error

    def listed(request: gr.Request | None):
        service = service_of()
        characters = service.store.characters(owner(request)) if service else []
        # images, not paths: Gradio serves only files under its allowed folders
        return ([(_image(service.store.file(c.image).read_bytes()), f"{c.name} [{c.id}]")
                 for c in characters],
                [(f"{c.name} [{c.id}]", c.id) for c in characters])

    def refresh(request: gr.Request):
        images, choices = listed(request)
        service = service_of()
        mine = [(f"{p.name} (mine)", p.id) for p in service.store.poses(owner(request))] \
            if service else []
        return images, gr.update(choices=choices), gr.update(choices=preset_choices + mine)

    def preview(pose_id: str | None, request: gr.Request):
        service = service_of()
        if not pose_id or service is None:
            return None
        if pose_id in service.presets:
            return _image(service.presets[pose_id].preview.read_bytes())
        keypoints = service.find_pose(owner(request), pose_id)
        return _image(call(lambda s, c: s.render_pose(c, keypoints)))

    def create(name, prompt, negative, seed, width, height, steps, sampler, cfg,
               request: gr.Request):
        if not (prompt or "").strip():
            raise gr.Error("Write a prompt first")
        fields = {"prompt": prompt, "negative_prompt": negative or "", "seed": int(seed),
                  "width": int(width), "height": int(height), "steps": int(steps),
                  "sampler_name": sampler, "scheduler": "Automatic", "cfg_scale": float(cfg)}
        character = call(lambda s, c: s.create_character(c, owner(request), name, fields, None))
        images, choices = listed(request)
        return images, gr.update(choices=choices, value=character.id), character.infotext

    def history(character_id: str | None, request: gr.Request):
        service = service_of()
        if not character_id or service is None:
            return []
        character = service.store.character(owner(request), character_id)
        if character is None:
            return []
        return [(_image(service.store.file(r.image).read_bytes()), r.pose_id or r.control)
                for r in service.store.renders(character.id)]

    def repose(character_id, pose_id, control, reference, weight, request: gr.Request):
        if not character_id:
            raise gr.Error("Create or pick a character first")
        if control in ("openpose", "both") and not pose_id:
            raise gr.Error("Pick a pose")
        fields = {"control": control, "weight": float(weight),
                  "pose_id": pose_id if control != "depth" else None,
                  "reference_image": _b64(reference) if reference is not None else None}
        render, image = call(lambda s, c: s.repose(c, owner(request), character_id, **fields))
        return _image(image), render.infotext, history(character_id, request)

    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Row(equal_height=False):
            with gr.Column():
                gr.Markdown("### New character")
                name = gr.Textbox(label="Name", elem_id="character_name")
                prompt = gr.Textbox(label="Prompt", lines=2, elem_id="character_prompt")
                negative = gr.Textbox(label="Negative prompt", elem_id="character_negative")
                with gr.Row():
                    seed = gr.Number(-1, label="Seed (-1: random)", precision=0,
                                     elem_id="character_seed")
                    sampler = gr.Dropdown(list(SAMPLERS), value="Euler a", label="Sampler",
                                          elem_id="character_sampler")
                with gr.Row():
                    width = gr.Slider(64, 2048, 512, step=8, label="Width",
                                      elem_id="character_width")
                    height = gr.Slider(64, 2048, 512, step=8, label="Height",
                                       elem_id="character_height")
                with gr.Row():
                    steps = gr.Slider(1, 150, 20, step=1, label="Steps",
                                      elem_id="character_steps")
                    cfg = gr.Slider(1, 30, 7, step=0.5, label="CFG scale",
                                    elem_id="character_cfg")
                create_button = gr.Button("Create character", variant="primary",
                                          elem_id="character_create")
                characters = gr.Gallery(label="Characters", columns=4, height=260,
                                        elem_id="character_gallery")
                with gr.Row():
                    chosen = gr.Dropdown([], label="Character", elem_id="character_chosen")
                    refresh_button = gr.Button("\U0001f504", scale=0, min_width=40,
                                               elem_id="character_refresh")
            with gr.Column():
                gr.Markdown("### Re-pose")
                with gr.Row():
                    pose = gr.Dropdown(preset_choices, value=None, label="Pose",
                                       elem_id="character_pose_choice")
                    pose_preview = gr.Image(label="Skeleton", height=200, interactive=False,
                                            elem_id="character_pose_preview")
                control = gr.Radio(list(CONTROLS), value="openpose", label="Control",
                                   elem_id="character_control")
                reference = gr.Image(label="Depth reference (depth / both)", type="pil",
                                     height=160, elem_id="character_reference")
                weight = gr.Slider(0, 2, 1, step=0.05, label="Control weight",
                                   elem_id="character_weight")
                repose_button = gr.Button("Re-pose", variant="primary",
                                          elem_id="character_repose")
                result = gr.Image(label="Result", interactive=False, elem_id="character_result")
                info = gr.Textbox(label="Parameters", lines=3, interactive=False,
                                  elem_id="character_info")
                past = gr.Gallery(label="History", columns=4, height=260,
                                  elem_id="character_history")
        refresh_button.click(refresh, outputs=[characters, chosen, pose])
        pose.change(preview, inputs=[pose], outputs=[pose_preview])
        create_button.click(create, inputs=[name, prompt, negative, seed, width, height, steps,
                                            sampler, cfg], outputs=[characters, chosen, info])
        chosen.change(history, inputs=[chosen], outputs=[past])
        repose_button.click(repose, inputs=[chosen, pose, control, reference, weight],
                            outputs=[result, info, past])
    return tab
