"""Training a textual-inversion embedding (the Train tab and /sdapi/v1/train/embedding): the
embedding's vectors are the only trained tensors; prompts containing its name are encoded with
autograd on, so the loss reaches them. The loop itself is `training_loop.run_training`."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager

import torch

from modules.engine.conditioning import PromptEncoder
from modules.engine.embedding_training import EmbeddingOptimizer
from modules.engine.textual_inversion import Embedding, EmbeddingVocabulary
from modules.engine.tokenizer import get_clip_tokenizer
from modules.engine.training_files import save_embedding
from modules.processing.training_create import TrainingInputError
from modules.processing.training_loop import (SAMPLING_METHODS, TrainingRequest, TrainingResult,
                                              TrainingRun, encode_texts, log_folder)

__all__ = ["SAMPLING_METHODS", "EmbeddingTrainee", "EmbeddingTrainingRequest", "TrainingResult",
           "TrainingRun", "log_folder"]

#: the request of both trainings, under the name the embedding route has always used
EmbeddingTrainingRequest = TrainingRequest


@dataclass
class EmbeddingTrainee:
    embedding: Embedding
    model: Any
    checkpoint_hash: str | None = None
    checkpoint_name: str | None = None
    kind: str = "embeddings"

    def __post_init__(self) -> None:
        if self.embedding.path is None:
            raise TrainingInputError(f"embedding {self.embedding.name} has no file")
        self.name = self.embedding.name
        self.path: Path = self.embedding.path
        self.start_step = int(self.embedding.step or 0)
        self._optimizer: EmbeddingOptimizer | None = None
        self._encoder: PromptEncoder | None = None

    def make_optimizer(self, rate: float, state: dict | None, *, clip_mode: str,
                       clip_value: float) -> EmbeddingOptimizer:
        self._optimizer = EmbeddingOptimizer(self.embedding, rate, clip_mode=clip_mode,
                                             clip_value=clip_value, state=state)
        tokenizer = get_clip_tokenizer()
        self._encoder = PromptEncoder(self.model, tokenizer, embeddings=EmbeddingVocabulary
                                      .build([self.embedding], tokenizer.encode))
        return self._optimizer

    def encode(self, texts: list[str], width: int,
               height: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        assert self._encoder is not None
        return encode_texts(self._encoder, texts, width, height)

    def active(self) -> ContextManager[Any]:
        return contextlib.nullcontext()

    def save(self, step: int, target: Path) -> None:
        assert self._optimizer is not None
        self.embedding.step = step
        save_embedding(Embedding(self.name, self._optimizer.snapshot(), step=step), target,
                       checkpoint_hash=self.checkpoint_hash, checkpoint_name=self.checkpoint_name)
