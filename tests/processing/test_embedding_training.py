"""Textual-inversion training on a tiny SD1 checkpoint, through the app's own route and job:
the loss on a fixed batch drops and the vectors move, a run resumes from its saved step with its
optimizer state, an interrupt stops it and the file keeps its last save, previews appear at the
set interval, and bad datasets get clear messages."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage
import torch
from fastapi.testclient import TestClient
from PIL import Image

from modules.api.app import create_api_app
from modules.app.training_service import run_embedding_training
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.engine.conditioning import PromptEncoder
from modules.engine.embedding_training import RateSchedule, diffusion_loss
from modules.engine.textual_inversion import EmbeddingVocabulary, read_embedding
from modules.engine.tokenizer import get_clip_tokenizer
from modules.jobs.progress import JobProgress
from modules.processing.embedding_training import EmbeddingTrainingRequest
from modules.processing.training_create import TrainingInputError
from tests.engine.tiny_checkpoints import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = Path(skimage.__file__).parent / "data"


@pytest.fixture
def app(tmp_path):
    (tmp_path / "models" / "Stable-diffusion").mkdir(parents=True)
    write_tiny_checkpoint(tmp_path / "models" / "Stable-diffusion" / "tiny.safetensors", "sd1",
                          seed=1)
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    Image.open(PHOTOS / "astronaut.png").resize((96, 96)).save(dataset / "astronaut.png")
    (dataset / "astronaut.txt").write_text("a woman, space suit, flag")
    Image.open(PHOTOS / "coffee.png").resize((96, 96)).save(dataset / "0007-a_cup_of_coffee.png")
    args, _ = parse_args(["--data-dir", str(tmp_path), "--skip-load-model-at-start",
                          "--nowebui"])
    ctx = build_app_context(args, ROOT)
    client = TestClient(create_api_app(ctx))
    assert client.post("/sdapi/v1/create/embedding", json={
        "name": "tinyfox", "num_vectors_per_token": 2, "init_text": "fox"}).json()["info"] \
        .startswith("create embedding filename")
    yield ctx, client, tmp_path
    ctx.close()


def request(**fields) -> EmbeddingTrainingRequest:
    values = dict(embedding_name="tinyfox", learn_rate="0.05", data_root="dataset",
                  training_width=64, training_height=64, steps=20, save_embedding_every=0,
                  create_image_every=0, template_filename="subject_filewords.txt")
    values.update(fields)
    return EmbeddingTrainingRequest(**values)


def train(ctx, progress=None, **fields):
    return ctx.jobs.run("train_embedding", lambda job_progress: run_embedding_training(
        ctx, request(**fields), progress or job_progress))


def fixed_batch_loss(ctx, vectors) -> float:
    """The loss of one fixed latent, timestep and noise with the embedding's vectors."""
    model = ctx.model_manager.current().model
    embedding = read_embedding(ctx.paths.embeddings_dir / "tinyfox.pt")
    embedding.vectors = {"vec": vectors}
    encoder = PromptEncoder(model, get_clip_tokenizer(), embeddings=EmbeddingVocabulary.build(
        [embedding], get_clip_tokenizer().encode))
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        crossattn, _ = encoder.encode_for_training(["a photo of tinyfox"])
        losses = [float(diffusion_loss(model, latents, crossattn, None,
                                       torch.Generator().manual_seed(seed))) for seed in range(8)]
    return float(np.mean(losses))


def test_twenty_steps_lower_the_loss_and_move_the_vectors(app):
    ctx, _, _ = app
    path = ctx.paths.embeddings_dir / "tinyfox.pt"
    before = read_embedding(path).vectors["vec"]
    result = train(ctx, template_filename="subject.txt", steps=20)
    after = read_embedding(path)
    assert after.step == 20 and result.step == 20 and len(result.losses) == 20
    assert not torch.allclose(before, after.vectors["vec"])
    model_before = fixed_batch_loss(ctx, before)
    model_after = fixed_batch_loss(ctx, after.vectors["vec"])
    assert model_after < model_before, (model_before, model_after)


def test_a_run_resumes_from_its_saved_step_with_its_optimizer_state(app):
    ctx, _, _ = app
    path = ctx.paths.embeddings_dir / "tinyfox.pt"
    train(ctx, steps=10, save_embedding_every=5)
    assert read_embedding(path).step == 10
    optim = torch.load(path.with_name("tinyfox.pt.optim"), weights_only=True)
    assert optim["step"] == 10 and optim["optimizer_state_dict"]["state"]
    resumed = train(ctx, steps=15)
    assert len(resumed.losses) == 5 and read_embedding(path).step == 15
    # the run's copies: one per save
    copies = sorted(p.name for p in (ctx.paths.data_dir / "textual_inversion").rglob("*.pt"))
    assert copies == ["tinyfox-10.pt", "tinyfox-15.pt", "tinyfox-5.pt"]
    with pytest.raises(TrainingInputError, match="already trained to step 15"):
        train(ctx, steps=15)


def test_an_interrupt_stops_at_the_next_step_and_keeps_the_last_save(app):
    ctx, _, _ = app
    progress = JobProgress()

    def stop_after_six(step, total, latent):
        if step == 6:
            progress.interrupt()

    progress.set_step_listener(stop_after_six)
    result = train(ctx, progress, steps=50, save_embedding_every=4)
    assert result.interrupted and result.step == 7 and result.last_saved_step == 4
    assert read_embedding(ctx.paths.embeddings_dir / "tinyfox.pt").step == 4


def test_previews_appear_at_the_set_interval_through_the_api(app):
    ctx, client, data = app
    answer = client.post("/sdapi/v1/train/embedding", json={
        "id_task": "task(train-1)", "embedding_name": "tinyfox", "learn_rate": "0.01",
        "data_root": str(data / "dataset"), "training_width": 64, "training_height": 64,
        "steps": 6, "create_image_every": 3, "save_embedding_every": 0,
        "template_filename": "style_filewords.txt", "preview_steps": 2}).json()
    path = ctx.paths.embeddings_dir / "tinyfox.pt"
    assert answer == {"info": f"train embedding complete: filename: {path} error: None"}
    previews = sorted((data / "textual_inversion").rglob("images/*.png"))
    assert [p.name for p in previews] == ["tinyfox-3.png", "tinyfox-6.png"]
    assert Image.open(previews[0]).size == (64, 64)
    assert read_embedding(path).step == 6


def test_mixed_modes_and_unreadable_files(app):
    ctx, _, data = app
    dataset = data / "dataset"
    photo = Image.open(PHOTOS / "astronaut.png").resize((80, 80))
    photo.convert("RGBA").save(dataset / "rgba.png")
    photo.convert("P").save(dataset / "palette.png")
    grey = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(grey).save(dataset / "sixteen.png")
    assert Image.open(dataset / "sixteen.png").mode.startswith("I")
    (dataset / "broken.png").write_bytes(b"not an image")
    result = train(ctx, steps=2)
    assert result.step == 2
    assert [entry.split(":")[0] for entry in result.skipped] == ["broken.png"]


@pytest.mark.parametrize("fields, message", [
    ({"data_root": "empty"}, "no training images"),
    ({"data_root": "/etc"}, "outside the allowed folders"),
    ({"data_root": "nowhere"}, "does not exist"),
    ({"embedding_name": "nobody"}, "not found"),
    ({"template_filename": "../x.txt"}, "give the name of a .txt file"),
    ({"learn_rate": "fast"}, "is not 'rate' or 'rate:step'"),
    ({"latent_sampling_method": "sometimes"}, "latent sampling method"),
    ({"training_width": 8192}, "sides up to 2048 px"),
    ({"batch_size": 64, "gradient_step": 64}, "sides up to 2048 px"),
])
def test_bad_input_is_a_clear_message(app, fields, message):
    ctx, client, data = app
    (data / "empty").mkdir()
    (data / "empty" / "notes.txt").write_text("no pictures here")
    answer = client.post("/sdapi/v1/train/embedding",
                         json={**request().__dict__, **fields}).json()
    assert answer["info"].startswith("train embedding error: ")
    assert message in answer["info"]
    assert read_embedding(ctx.paths.embeddings_dir / "tinyfox.pt").step == 0


def test_learning_rate_schedules():
    schedule = RateSchedule.parse("0.005:100, 1e-3:1000, 1e-5", 5000)
    assert [schedule.rate_at(step) for step in (0, 99, 100, 999, 1000, 4999)] == \
        [0.005, 0.005, 0.001, 0.001, 1e-5, 1e-5]
    assert schedule.rate_at(5000) is None and schedule.end == 5000
    assert RateSchedule.parse("0.01:50", 5000).end == 50
    for bad in ("", "0", "0.1:10, 0.2:5", "0.1, 0.2:50"):
        with pytest.raises(ValueError):
            RateSchedule.parse(bad, 100)


def hypernetwork_loss(ctx, network) -> float:
    from modules.engine.hypernetwork import HypernetworkPatch
    model = ctx.model_manager.current().model
    encoder = PromptEncoder(model, get_clip_tokenizer())
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad(), HypernetworkPatch(model.unet, [(network, 1.0)]):
        crossattn, _ = encoder.encode_for_training(["a photo of a cup"])
        losses = [float(diffusion_loss(model, latents, crossattn, None,
                                       torch.Generator().manual_seed(seed))) for seed in range(8)]
    return float(np.mean(losses))


def test_a_hypernetwork_trains_resumes_and_previews_through_the_api(app):
    from modules.engine.hypernetwork import read_hypernetwork
    ctx, client, data = app
    assert client.post("/sdapi/v1/create/hypernetwork", json={
        "name": "tinyhn", "enable_sizes": [32, 64], "layer_structure": "1, 2, 1"}).json()[
        "info"].startswith("create hypernetwork filename")
    path = ctx.paths.hypernetwork_dir / "tinyhn.pt"
    before = read_hypernetwork(path)
    answer = client.post("/sdapi/v1/train/hypernetwork", json={
        "hypernetwork_name": "tinyhn", "learn_rate": "0.002", "data_root": "dataset",
        "training_width": 64, "training_height": 64, "steps": 12, "create_image_every": 6,
        "save_embedding_every": 6, "template_filename": "hypernetwork.txt",
        "preview_steps": 2}).json()
    assert answer == {"info": f"train embedding complete: filename: {path} error: None"}
    after = read_hypernetwork(path)
    assert after.step == 12 and sorted(after.layers) == [32, 64]
    assert not torch.equal(before.layers[32][0][0].weight, after.layers[32][0][0].weight)
    assert hypernetwork_loss(ctx, after) < hypernetwork_loss(ctx, before)
    previews = sorted(p.name for p in (data / "textual_inversion").rglob("images/tinyhn-*.png"))
    assert previews == ["tinyhn-12.png", "tinyhn-6.png"]
    assert path.with_name("tinyhn.pt.optim").is_file()
    resumed = client.post("/sdapi/v1/train/hypernetwork", json={
        "hypernetwork_name": "tinyhn", "data_root": "dataset", "training_width": 64,
        "training_height": 64, "steps": 14, "create_image_every": 0,
        "save_embedding_every": 0, "template_filename": "hypernetwork.txt"}).json()
    assert resumed["info"].startswith("train embedding complete")
    assert read_hypernetwork(path).step == 14
    missing = client.post("/sdapi/v1/train/hypernetwork", json={
        "hypernetwork_name": "nobody", "data_root": "dataset"}).json()
    assert missing["info"].startswith("train hypernetwork error: ") and \
        "not found" in missing["info"]
