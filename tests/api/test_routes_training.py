"""create/embedding and create/hypernetwork write A1111-format files that the loaders read back
and the listings show at once; failures answer A1111's shape `{info: "<action> error: ..."}`
(status 200, as A1111 reports every failure of these routes) and write nothing. Training has its
own tests (tests/processing/test_embedding_training.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.engine.hypernetwork import read_hypernetwork
from modules.engine.textual_inversion import read_embedding
from modules.engine.tokenizer import get_clip_tokenizer
from tests.engine.tiny_checkpoints import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def make_client(data: Path, kind: str | None = "sd1"):
    if kind is not None:
        (data / "models" / "Stable-diffusion").mkdir(parents=True)
        write_tiny_checkpoint(data / "models" / "Stable-diffusion" / f"tiny-{kind}.safetensors",
                              kind, seed=1)
    args, _ = parse_args(["--data-dir", str(data), "--skip-load-model-at-start", "--nowebui"])
    ctx = build_app_context(args, ROOT)
    return TestClient(create_api_app(ctx)), ctx


@pytest.fixture
def api(tmp_path):
    client, ctx = make_client(tmp_path)
    yield client, ctx, tmp_path
    ctx.close()


def written_files(data: Path) -> list[Path]:
    return sorted(path for path in data.rglob("*") if path.suffix in (".pt", ".safetensors")
                  and "Stable-diffusion" not in path.parts)


def test_create_embedding_spreads_the_init_text_and_is_listed_at_once(api):
    client, ctx, data = api
    answer = client.post("/sdapi/v1/create/embedding", json={
        "name": "fox", "num_vectors_per_token": 4, "overwrite_old": False,
        "init_text": "a red fox"}).json()
    path = data / "embeddings" / "fox.pt"
    assert answer == {"info": f"create embedding filename: {path}"}
    embedding = read_embedding(path)
    assert embedding.name == "fox" and embedding.count == 4 and embedding.step == 0
    # vector i is the init text's token i * 3 // 4: "a", "a", "red", "fox"
    encoder = ctx.model_manager.current().model.cond_stage_model
    ids = get_clip_tokenizer().encode("a red fox")
    with torch.no_grad():
        table = encoder.token_embeddings(torch.tensor([ids]))[0]
    expected = table[[0, 0, 1, 2]].float()
    assert torch.allclose(embedding.vectors["vec"], expected)
    assert embedding.sd_checkpoint_name == "tiny-sd1"
    listed = client.get("/sdapi/v1/embeddings").json()
    assert listed["loaded"]["fox"]["vectors"] == 4

    again = client.post("/sdapi/v1/create/embedding", json={"name": "fox"}).json()
    assert again["info"].startswith("create embedding error: file ")
    assert "already exists" in again["info"]
    replaced = client.post("/sdapi/v1/create/embedding", json={
        "name": "fox", "overwrite_old": True, "init_text": ""}).json()
    assert replaced["info"].endswith("fox.pt")
    assert read_embedding(path).count == 1
    assert torch.count_nonzero(read_embedding(path).vectors["vec"]) == 0   # empty init text


def test_create_embedding_for_sdxl_writes_both_encoders(tmp_path):
    client, ctx = make_client(tmp_path, "sdxl")
    try:
        answer = client.post("/sdapi/v1/create/embedding", json={
            "name": "xl fox", "num_vectors_per_token": 2, "init_text": "fox"}).json()
        path = tmp_path / "embeddings" / "xl fox.safetensors"
        assert answer["info"] == f"create embedding filename: {path}"
        embedding = read_embedding(path)
        widths = {key: value.shape for key, value in embedding.vectors.items()}
        model = ctx.model_manager.current().model
        assert widths == {"clip_l" if config.kind == "clip_l" else "clip_g":
                          (2, config.width) for _, config in model.text_encoders}
    finally:
        ctx.close()


def test_create_embedding_without_a_checkpoint_says_why(tmp_path):
    client, ctx = make_client(tmp_path, None)
    try:
        answer = client.post("/sdapi/v1/create/embedding", json={"name": "fox"}).json()
        assert answer["info"].startswith("create embedding error: ")
        assert "checkpoint" in answer["info"].lower()
        assert written_files(tmp_path) == []
    finally:
        ctx.close()


def test_create_hypernetwork_writes_a_file_the_loader_reads(api):
    client, _, data = api
    answer = client.post("/sdapi/v1/create/hypernetwork", json={
        "name": "fox", "enable_sizes": ["768", 320], "layer_structure": "1, 1.5, 1",
        "activation_func": "relu", "weight_init": "KaimingNormal", "add_layer_norm": True,
        "use_dropout": True, "dropout_structure": "0, 0.1, 0"}).json()
    path = data / "models" / "hypernetworks" / "fox.pt"
    assert answer == {"info": f"create hypernetwork filename: {path}"}
    network = read_hypernetwork(path)
    assert sorted(network.layers) == [320, 768] and network.step == 0
    k, v = network.layers[768]
    linears = [layer for layer in k if isinstance(layer, torch.nn.Linear)]
    assert [tuple(layer.weight.shape) for layer in linears] == [(1152, 768), (768, 1152)]
    assert any(isinstance(layer, torch.nn.LayerNorm) for layer in k)
    assert any(isinstance(layer, torch.nn.Dropout) for layer in k)
    assert not torch.equal(k[0].weight, v[0].weight)       # each side drawn on its own
    assert torch.count_nonzero(linears[0].bias) == 0


@pytest.mark.parametrize("payload, message", [
    ({"name": "fox", "layer_structure": "2, 1"}, "must start and end with 1"),
    ({"name": "fox", "weight_init": "Magic"}, "weight initialization must be one of"),
    ({"name": "fox", "activation_func": "sparkle"}, "unknown activation function"),
    ({"name": "fox", "enable_sizes": []}, "at least one context width"),
    ({"name": "///"}, "Give a name"),
    ({"name": "fox", "enable_sizes": [10**9]}, "context widths must be from 1 to"),
    ({"name": "fox", "layer_structure": "1, 1000, 1"}, "at most 16 layers, each"),
])
def test_create_hypernetwork_refuses_bad_input_and_writes_nothing(api, payload, message):
    client, _, data = api
    answer = client.post("/sdapi/v1/create/hypernetwork", json=payload).json()
    assert answer["info"].startswith("create hypernetwork error: ")
    assert message in answer["info"]
    assert written_files(data) == []


def test_a_name_never_leaves_the_folder(api):
    client, _, data = api
    answer = client.post("/sdapi/v1/create/hypernetwork",
                         json={"name": "../../escape"}).json()
    assert answer["info"] == \
        f"create hypernetwork filename: {data / 'models' / 'hypernetworks' / 'escape.pt'}"
    assert [path.name for path in written_files(data)] == ["escape.pt"]


def test_training_routes_need_a_json_object(api):
    client, _, _ = api
    assert client.post("/sdapi/v1/create/embedding", json=[1, 2]).status_code == 422
    assert client.post("/sdapi/v1/train/embedding").status_code == 422
