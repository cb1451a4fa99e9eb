"""Options, the UI's checkpoint dropdown and the infotext name the checkpoint actually loaded: on a
fresh install (only the demo model, no config.json) and after a restart whose configured
checkpoint file was removed. config.json keeps what the user chose."""
from __future__ import annotations

import base64
import io
import json

from fastapi.testclient import TestClient
from PIL import Image

import webui
from modules.api.app import create_api_app
from modules.app.checkpoints import DEMO_CHECKPOINT_FILE
from modules.ui.app import build_ui
from tests.engine.tiny_checkpoints import write_tiny_checkpoint
from tests.ui.conftest import app_context


def start_like_the_server(ctx) -> None:
    """What webui.main does before serving: --ckpt selection, then the queued preload."""
    webui.select_startup_checkpoint(ctx)
    webui.preload_checkpoint(ctx)
    ctx.jobs.run("wait_for_preload", lambda progress: None, timeout=120)


def shown_names(ctx) -> dict[str, str]:
    """What a client, the page (its load refresh) and the next image say is loaded."""
    client = TestClient(create_api_app(ctx))
    options = client.get("/sdapi/v1/options").json()
    blocks = build_ui(ctx)
    [load_event] = [fn for fn in blocks.fns.values()
                    if any(target[1] == "load" for target in fn.targets)]
    # the quicksettings dropdown (a choices + value update) and the Settings tab's one (a value)
    dropdowns = [value["value"] if isinstance(value, dict) else value
                 for component, value in zip(load_event.outputs, load_event.fn())
                 if component.elem_id == "setting_sd_model_checkpoint"]
    assert len(dropdowns) == 2 and dropdowns[0] == dropdowns[1], dropdowns
    answer = client.post("/sdapi/v1/txt2img", json={
        "prompt": "a red circle", "steps": 2, "width": 64, "height": 64, "seed": 4})
    assert answer.status_code == 200, answer.text
    image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    model_in_infotext = [part.split(": ", 1)[1] for part in image.info["parameters"].split(", ")
                         if part.startswith("Model: ")]
    return {"options": options["sd_model_checkpoint"], "dropdown": dropdowns[0],
            "infotext": model_in_infotext[0], "hash": options["sd_checkpoint_hash"]}


def test_a_fresh_install_reports_the_demo_model(tmp_path):
    ckpt_dir = tmp_path / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    write_tiny_checkpoint(ckpt_dir / DEMO_CHECKPOINT_FILE, "sd1", seed=1)
    assert not (tmp_path / "config.json").exists()
    with app_context(tmp_path) as ctx:
        start_like_the_server(ctx)
        [demo] = ctx.checkpoints.list()
        shown = shown_names(ctx)
        assert shown["options"] == shown["dropdown"] == demo.title
        assert shown["infotext"] == demo.stem
        assert demo.sha256 and shown["hash"] == demo.sha256


def test_a_restart_without_the_configured_file_reports_the_fallback(tmp_path):
    ckpt_dir = tmp_path / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    write_tiny_checkpoint(ckpt_dir / "first.safetensors", "sd1", seed=1)
    write_tiny_checkpoint(ckpt_dir / "second.safetensors", "sd1", seed=2)
    with app_context(tmp_path) as ctx:
        start_like_the_server(ctx)
        client = TestClient(create_api_app(ctx))
        assert client.post("/sdapi/v1/options",
                           json={"sd_model_checkpoint": "second"}).status_code == 200
        chosen = client.get("/sdapi/v1/options").json()["sd_model_checkpoint"]
        assert chosen.startswith("second.safetensors")

    (ckpt_dir / "second.safetensors").unlink()
    with app_context(tmp_path) as ctx:
        start_like_the_server(ctx)
        assert ctx.model_manager.current_checkpoint().name == "first.safetensors"
        shown = shown_names(ctx)
        assert shown["options"].startswith("first.safetensors"), shown
        assert shown["dropdown"] == shown["options"]
        assert shown["infotext"] == "first"
    # the user's choice stays on disk until they choose again
    assert json.loads((tmp_path / "config.json").read_text())["sd_model_checkpoint"] == chosen
