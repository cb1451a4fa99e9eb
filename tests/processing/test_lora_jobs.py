"""LoRAs in jobs through the API: `<lora:name:m>` tags in the prompt apply a tiny kohya LoRA from
models/Lora for the job only, `Lora hashes` lands in the infotext, and names or files that cannot
be used are warnings in the answer while the job still runs."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import save_file

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.engine.checkpoint_io import addnet_hash_safetensors, read_state_dict
from tests.engine.test_hypernetwork import write_hypernetwork
from tests.engine.test_lora import kohya_names_sd1, random_lora
from tests.engine.tiny_checkpoints import write_tiny_checkpoint, write_tiny_checkpoint as _tiny

ROOT = Path(__file__).resolve().parents[2]
BODY = {"width": 64, "height": 64, "steps": 3, "seed": 11, "sampler_name": "Euler"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("lora-jobs")
    for folder in ("Stable-diffusion", "Lora", "hypernetworks"):
        (data / "models" / folder).mkdir(parents=True)
    checkpoint = write_tiny_checkpoint(data / "models" / "Stable-diffusion" / "tiny.safetensors",
                                       "sd1", seed=1)
    state = read_state_dict(checkpoint)
    lora_path = data / "models" / "Lora" / "red_cape.safetensors"
    save_file(random_lora(kohya_names_sd1(state), state, seed=5), str(lora_path),
              metadata={"ss_output_name": "redcape_v1"})
    (data / "models" / "Lora" / "broken.safetensors").write_bytes(b"\x00" * 40)
    whole = lora_path.read_bytes()           # a download cut off half way
    (data / "models" / "Lora" / "truncated.safetensors").write_bytes(whole[:len(whole) // 2])
    _tiny(data / "models" / "Lora" / "not_a_lora.safetensors", "sd1", seed=2)
    write_hypernetwork(data / "models" / "hypernetworks" / "anime_eyes.pt")
    (data / "models" / "hypernetworks" / "torn.pt").write_bytes(b"PK\x03\x04 torn")
    args, _ = parse_args(["--data-dir", str(data), "--nowebui"])
    ctx = build_app_context(args, ROOT)
    yield SimpleNamespace(client=TestClient(create_api_app(ctx)), ctx=ctx, lora=lora_path,
                          data=data)
    ctx.close()


def generate(api, prompt: str) -> tuple[np.ndarray, dict]:
    answer = api.client.post("/sdapi/v1/txt2img", json={**BODY, "prompt": prompt})
    assert answer.status_code == 200, answer.text
    image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    return np.asarray(image.convert("RGB")), json.loads(answer.json()["info"])


def test_a_lora_tag_changes_the_image_for_that_job_only(api):
    plain, info = generate(api, "a knight")
    zero, _ = generate(api, "a knight <lora:red_cape:0>")
    assert np.array_equal(zero, plain)                      # multiplier 0: the base model
    steered, info = generate(api, "a knight <lora:red_cape:0.9>")
    assert not np.array_equal(steered, plain)
    digest = addnet_hash_safetensors(api.lora)[:12]
    assert f'Lora hashes: "redcape_v1: {digest}"' in info["infotexts"][0]
    by_alias, _ = generate(api, "a knight <lora:redcape_v1:0.9>")   # the metadata's name
    assert np.array_equal(by_alias, steered)
    unet_only, _ = generate(api, "a knight <lora:red_cape:0:0.9>")
    assert not np.array_equal(unet_only, plain) and not np.array_equal(unet_only, steered)
    named, _ = generate(api, "a knight <lora:red_cape:te=0:unet=0.9>")
    assert np.array_equal(named, unet_only)
    first_ranks, _ = generate(api, "a knight <lora:red_cape:0.9:0.9:2>")
    assert not np.array_equal(first_ranks, steered)
    by_name, _ = generate(api, "a knight <lora:red_cape:0.9:dyn=2>")
    assert np.array_equal(by_name, first_ranks)
    again, _ = generate(api, "a knight")
    assert np.array_equal(again, plain)                     # nothing left in the weights


@pytest.mark.parametrize("tag, warning", [
    ("<lora:nobody:1>", "Lora 'nobody' not found"),
    ("<lora:broken:1>", "Lora 'broken' cannot be loaded"),
    ("<lora:truncated:1>", "Lora 'truncated' cannot be loaded"),
    ("<lora:not_a_lora:1>", "Lora 'not_a_lora'"),
    ("<lora:red_cape:1:1:none>", "dyn must be a whole number"),
    ("<hypernet:nobody:1>", "Hypernetwork 'nobody' not found"),
    ("<hypernet:torn:1>", "Hypernetwork 'torn' cannot be loaded"),
])
def test_a_lora_that_cannot_be_used_is_a_warning_and_the_job_runs(api, tag, warning):
    plain, _ = generate(api, "a knight")
    image, info = generate(api, f"a knight {tag}")
    assert np.array_equal(image, plain)
    assert warning in info.get("comments", ""), info.get("comments")


def test_a_hypernet_tag_steers_that_job_only_and_mixes_with_a_lora(api):
    plain, _ = generate(api, "a knight")
    zero, _ = generate(api, "a knight <hypernet:anime_eyes:0>")
    assert np.array_equal(zero, plain)
    steered, _ = generate(api, "a knight <hypernet:anime_eyes:1>")
    assert not np.array_equal(steered, plain)
    default, _ = generate(api, "a knight <hypernet:anime_eyes>")     # the default multiplier
    assert np.array_equal(default, steered)
    both, info = generate(api, "a knight <hypernet:anime_eyes:1> <lora:red_cape:0.9>")
    assert not np.array_equal(both, steered) and "Lora hashes" in info["infotexts"][0]
    again, _ = generate(api, "a knight")
    assert np.array_equal(again, plain)
    listed = api.client.get("/sdapi/v1/hypernetworks").json()
    assert {"anime_eyes", "torn"} <= {item["name"] for item in listed}


def test_a_lora_inside_prompt_editing_is_on_for_the_whole_job_as_in_a1111(api):
    """A1111 takes extra-network tags out of the whole prompt before it schedules prompt
    editing, so `[<lora:x>::2]` does not switch the LoRA at step 2: it is on throughout."""
    whole, _ = generate(api, "a knight <lora:red_cape:0.9>")
    edited, info = generate(api, "a knight [<lora:red_cape:0.9>::2]")
    assert np.array_equal(edited, whole)
    assert "Lora hashes" in info["infotexts"][0]


def test_the_patched_copy_needs_room_and_is_kept_only_while_it_is_small(api):
    """The LoRA's patched copy of the weights it changes is checked against the free memory
    before it is made (a clear refusal, not an out-of-memory crash), and kept for the next job
    with the same LoRA only while it takes at most half the free memory."""
    from modules.engine.lora import patch_bytes
    from modules.processing.extra_networks import LoraLibrary
    from modules.processing.memory_guard import InsufficientMemoryError, MemoryGuard
    from modules.engine.sd_model import load_model

    model = load_model(api.data / "models" / "Stable-diffusion" / "tiny.safetensors")
    library = LoraLibrary([api.lora.parent])
    chosen = [(library.network(library.find("red_cape"), model), 0.9, 0.9)]
    needed = patch_bytes(model, chosen)
    assert needed > 0

    def guard(free: int) -> MemoryGuard:
        return MemoryGuard(reserve_bytes=lambda: 0, free_bytes=lambda device: free)

    with pytest.raises(InsufficientMemoryError, match="applying the LoRA"):
        library.patched_weights(model, chosen, ("key",), guard(needed - 1))
    first = library.patched_weights(model, chosen, ("key",), guard(4 * needed))
    assert library.patched_weights(model, chosen, ("key",), guard(4 * needed)) is first
    other = library.patched_weights(model, chosen, ("other",), guard(needed + needed // 2))
    assert other is not first
    assert library.patched_weights(model, chosen, ("other",), guard(4 * needed)) is not other
