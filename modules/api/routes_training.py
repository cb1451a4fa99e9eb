"""POST /sdapi/v1/create/embedding, /create/hypernetwork, /train/embedding, /train/hypernetwork
(a1111-compat.md §4.6).

Textual-inversion and hypernetwork training are not part of this build yet. A1111 reports every
failure of these routes inside `info` with status 200 ("create embedding error: ...", "train
embedding error: ..."), and the clients that call them read `info`; so the missing feature is
reported the same way: an A1111-shaped answer whose text says what is missing, no file written.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body

from modules.api.models import CreateResponse, TrainResponse

if TYPE_CHECKING:
    from modules.app.context import AppContext

NOT_AVAILABLE = "{what} is not available in this build yet (no {feature} support); nothing was {done}"


def not_available(what: str, feature: str, done: str) -> str:
    return NOT_AVAILABLE.format(what=what, feature=feature, done=done)


def training_router(ctx: "AppContext") -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1")

    @router.post("/create/embedding", response_model=CreateResponse, tags=["training"])
    def create_embedding(args: dict[str, Any] = Body(...)) -> CreateResponse:
        reason = not_available("Creating an embedding", "textual inversion", "written")
        return CreateResponse(info=f"create embedding error: {reason}")

    @router.post("/create/hypernetwork", response_model=CreateResponse, tags=["training"])
    def create_hypernetwork(args: dict[str, Any] = Body(...)) -> CreateResponse:
        reason = not_available("Creating a hypernetwork", "hypernetwork", "written")
        return CreateResponse(info=f"create hypernetwork error: {reason}")

    @router.post("/train/embedding", response_model=TrainResponse, tags=["training"])
    def train_embedding(args: dict[str, Any] = Body(...)) -> TrainResponse:
        reason = not_available("Training an embedding", "textual inversion training", "trained")
        return TrainResponse(info=f"train embedding error: {reason}")

    @router.post("/train/hypernetwork", response_model=TrainResponse, tags=["training"])
    def train_hypernetwork(args: dict[str, Any] = Body(...)) -> TrainResponse:
        reason = not_available("Training a hypernetwork", "hypernetwork training", "trained")
        return TrainResponse(info=f"train hypernetwork error: {reason}")

    return router
