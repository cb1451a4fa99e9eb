"""POST /sdapi/v1/create/embedding, /create/hypernetwork, /train/embedding, /train/hypernetwork
(a1111-compat.md §4.6).

A1111 reports every failure of these routes inside `info` with status 200 ("create embedding
error: ...", "train embedding error: ..."), and the clients that call them read `info`; this does
the same. Creating writes the file in A1111's format (`processing/training_create.py`); an
embedding is made on the loaded model's text encoders, so it runs as a job on the device.
Training (an embedding or a hypernetwork) runs as a job through `app/training_service.py`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any


from fastapi import APIRouter, Body

from modules.api.models import CreateResponse, TrainResponse
from modules.app.training_service import (create_embedding_here, run_embedding_training,
                                          run_hypernetwork_training)
from modules.processing.hypernetwork_training import DEFAULT_RATE as HYPERNETWORK_RATE
from modules.processing import training_create
from modules.processing.embedding_training import EmbeddingTrainingRequest
from modules.processing.training_create import TrainingInputError

if TYPE_CHECKING:
    from modules.app.context import AppContext

def error_text(error: BaseException) -> str:
    return str(getattr(error, "detail", None) or error) or type(error).__name__


def training_router(ctx: "AppContext") -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1")

    @router.post("/create/embedding", response_model=CreateResponse, tags=["training"])
    def create_embedding(args: dict[str, Any] = Body(...)) -> CreateResponse:
        """`{name, num_vectors_per_token=1, overwrite_old=false, init_text="*"}` → a new
        embedding in the embeddings folder, made on the loaded checkpoint's text encoders."""
        try:
            path = ctx.jobs.run("create_embedding", lambda progress: create_embedding_here(
                ctx, str(args.get("name") or ""),
                num_vectors_per_token=int(args.get("num_vectors_per_token") or 1),
                overwrite_old=bool(args.get("overwrite_old")),
                init_text=str(args.get("init_text", "*") or "")))
        except Exception as error:  # noqa: BLE001 - A1111 reports it in `info`
            return CreateResponse(info=f"create embedding error: {error_text(error)}")
        return CreateResponse(info=f"create embedding filename: {path}")

    @router.post("/create/hypernetwork", response_model=CreateResponse, tags=["training"])
    def create_hypernetwork(args: dict[str, Any] = Body(...)) -> CreateResponse:
        """`{name, enable_sizes=[768, 320, 640, 1024, 1280], overwrite_old, layer_structure
        ="1, 2, 1", activation_func="linear", weight_init="Normal", add_layer_norm, use_dropout,
        dropout_structure}` → a new hypernetwork in the hypernetworks folder."""
        try:
            path = training_create.create_hypernetwork(
                ctx.paths.hypernetwork_dir, str(args.get("name") or ""),
                enable_sizes=args["enable_sizes"] if args.get("enable_sizes") is not None
                else training_create.DEFAULT_SIZES,
                overwrite_old=bool(args.get("overwrite_old")),
                layer_structure=args.get("layer_structure") or "1, 2, 1",
                activation_func=args.get("activation_func") or "linear",
                weight_init=args.get("weight_init") or "Normal",
                add_layer_norm=bool(args.get("add_layer_norm")),
                use_dropout=bool(args.get("use_dropout")),
                dropout_structure=args.get("dropout_structure"))
        except (TrainingInputError, TypeError, ValueError) as error:
            return CreateResponse(info=f"create hypernetwork error: {error}")
        return CreateResponse(info=f"create hypernetwork filename: {path}")

    def train(kind: str, args: dict[str, Any], run: Any) -> TrainResponse:
        """Run one training job and answer as A1111 does (its success text says "train
        embedding" for hypernetworks too)."""
        try:
            request = EmbeddingTrainingRequest.from_api(args)
            if kind == "hypernetwork" and "learn_rate" not in args:
                request.learn_rate = HYPERNETWORK_RATE
            result = ctx.jobs.run(f"train_{kind}",
                                  lambda progress: run(ctx, request, progress),
                                  task_id=str(args.get("id_task") or "") or None)
        except Exception as error:  # noqa: BLE001 - A1111 reports it in `info`
            return TrainResponse(info=f"train {kind} error: {error_text(error)}")
        return TrainResponse(info=f"train embedding complete: filename: {result.path} "
                                  f"error: None")

    @router.post("/train/embedding", response_model=TrainResponse, tags=["training"])
    def train_embedding(args: dict[str, Any] = Body(...)) -> TrainResponse:
        """A1111's fields (`embedding_name`, `learn_rate`, `data_root`, `steps`, ...); runs as
        a job (progress, interrupt) and answers when it ends."""
        return train("embedding", args, run_embedding_training)

    @router.post("/train/hypernetwork", response_model=TrainResponse, tags=["training"])
    def train_hypernetwork(args: dict[str, Any] = Body(...)) -> TrainResponse:
        """A1111's fields (`hypernetwork_name`, `learn_rate` (0.00001), `data_root`, `steps`,
        ...); runs as a job and answers when it ends."""
        return train("hypernetwork", args, run_hypernetwork_training)

    return router
