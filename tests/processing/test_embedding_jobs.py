"""Embeddings in jobs through the API: the embeddings/ folder (subfolders too) is listed as the
loaded model sees it, a prompt naming an embedding draws what its words draw, and `TI hashes`
names the file in the infotext."""
from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import save_file

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.engine.checkpoint_io import read_state_dict
from modules.engine.tokenizer import ClipTokenizer
from tests.engine.tiny_checkpoints import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]
BODY = {"width": 64, "height": 64, "steps": 3, "seed": 21, "sampler_name": "Euler"}
WORDS = "silver crown"
TOKEN_TABLE = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("embedding-jobs")
    (data / "models" / "Stable-diffusion").mkdir(parents=True)
    folder = data / "embeddings" / "characters"
    folder.mkdir(parents=True)
    checkpoint = write_tiny_checkpoint(data / "models" / "Stable-diffusion" / "tiny.safetensors",
                                       "sd1", seed=1)
    table = read_state_dict(checkpoint)[TOKEN_TABLE]
    vectors = table[ClipTokenizer().encode(WORDS)].clone()
    torch.save({"string_to_param": {"*": vectors}, "name": "crownemb", "step": 120},
               folder / "crownemb.pt")
    save_file({"emb_params": torch.randn(2, 1024)}, str(data / "embeddings" / "sd2emb.safetensors"))
    (data / "embeddings" / "broken.pt").write_bytes(b"garbage")
    args, _ = parse_args(["--data-dir", str(data), "--nowebui"])
    ctx = build_app_context(args, ROOT)
    yield SimpleNamespace(client=TestClient(create_api_app(ctx)), ctx=ctx, data=data,
                          file=folder / "crownemb.pt")
    ctx.close()


def generate(api, prompt: str, **extra) -> tuple[np.ndarray, dict]:
    answer = api.client.post("/sdapi/v1/txt2img", json={**BODY, "prompt": prompt, **extra})
    assert answer.status_code == 200, answer.text
    image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    return np.asarray(image.convert("RGB")), json.loads(answer.json()["info"])


def test_an_embedding_draws_what_its_words_draw_and_is_named_in_the_infotext(api):
    words, words_info = generate(api, f"a queen, {WORDS}")
    named, info = generate(api, "a queen, crownemb")
    assert np.array_equal(named, words)
    digest = hashlib.sha256(api.file.read_bytes()).hexdigest()[:12]
    assert f'TI hashes: "crownemb: {digest}"' in info["infotexts"][0]
    assert "TI hashes" not in words_info["infotexts"][0]
    negative, info = generate(api, "a queen", negative_prompt="crownemb")
    plain_negative, _ = generate(api, "a queen", negative_prompt=WORDS)
    assert np.array_equal(negative, plain_negative) and "TI hashes" in info["infotexts"][0]


def test_the_listing_sorts_files_for_the_loaded_model(api):
    generate(api, "a queen")                        # a model is loaded: widths are known
    listing = api.client.get("/sdapi/v1/embeddings").json()
    assert listing["loaded"] == {"crownemb": {"step": 120, "sd_checkpoint": None,
                                              "sd_checkpoint_name": None, "shape": 32,
                                              "vectors": 2}}
    assert listing["skipped"]["sd2emb"]["shape"] == 1024
    assert "broken" not in listing["loaded"] and "broken" not in listing["skipped"]


def test_a_new_file_is_found_without_a_restart(api):
    table = read_state_dict(api.data / "models" / "Stable-diffusion" / "tiny.safetensors")
    vectors = table[TOKEN_TABLE][ClipTokenizer().encode("golden")]
    save_file({"emb_params": vectors}, str(api.data / "embeddings" / "goldemb.safetensors"))
    assert api.client.post("/sdapi/v1/refresh-embeddings").status_code == 200
    assert "goldemb" in api.client.get("/sdapi/v1/embeddings").json()["loaded"]
    named, _ = generate(api, "a goldemb queen")
    words, _ = generate(api, "a golden queen")
    assert np.array_equal(named, words)
