"""Training a hypernetwork (the Train tab and /sdapi/v1/train/hypernetwork): its MLPs are the
only trained tensors; they sit in every UNet attention layer's key / value path for each step
(`HypernetworkPatch`), with dropout on while training. The loop is `training_loop.run_training`."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager

import torch

from modules.engine.checkpoint_io import read_pickle
from modules.engine.conditioning import PromptEncoder
from modules.engine.embedding_training import ParameterOptimizer
from modules.engine.hypernetwork import HypernetworkPatch, hypernetwork_from_data
from modules.engine.tokenizer import get_clip_tokenizer
from modules.engine.training_files import save_hypernetwork
from modules.processing.training_create import TrainingInputError
from modules.processing.training_loop import encode_texts

#: A1111's default learning rate for hypernetworks
DEFAULT_RATE = "0.00001"


@dataclass
class HypernetworkTrainee:
    path: Path
    model: Any
    checkpoint_hash: str | None = None
    checkpoint_name: str | None = None
    kind: str = "hypernetworks"
    data: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        raw = read_pickle(self.path)
        if not isinstance(raw, Mapping):
            raise TrainingInputError(f"{self.path.name} is not a hypernetwork file")
        self.data = dict(raw)
        self.network = hypernetwork_from_data(self.path.stem, self.data)
        self.name = self.network.name
        self.start_step = int(self.network.step or 0)
        self.mlps = [mlp for pair in self.network.layers.values() for mlp in pair]
        for mlp in self.mlps:
            mlp.float().requires_grad_(True)
        self._optimizer: ParameterOptimizer | None = None
        self._encoder = PromptEncoder(self.model, get_clip_tokenizer())

    def make_optimizer(self, rate: float, state: dict | None, *, clip_mode: str,
                       clip_value: float) -> ParameterOptimizer:
        self._optimizer = ParameterOptimizer([p for mlp in self.mlps for p in mlp.parameters()],
                                             rate, clip_mode=clip_mode, clip_value=clip_value,
                                             state=state)
        return self._optimizer

    def encode(self, texts: list[str], width: int,
               height: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.no_grad():      # the text encoder is not trained here
            return encode_texts(self._encoder, texts, width, height)

    def active(self) -> ContextManager[Any]:
        for mlp in self.mlps:
            mlp.train()            # dropout while training, as A1111
        return _Training(HypernetworkPatch(self.model.unet, [(self.network, 1.0)]), self.mlps)

    def save(self, step: int, target: Path) -> None:
        data = dict(self.data)
        for width, (mlp_k, mlp_v) in self.network.layers.items():
            data[width] = tuple({f"linear.{key}": value.detach().cpu().clone()
                                 for key, value in mlp.state_dict().items()}
                                for mlp in (mlp_k, mlp_v))
        data.update(step=step, name=self.name, sd_checkpoint=self.checkpoint_hash,
                    sd_checkpoint_name=self.checkpoint_name)
        save_hypernetwork(data, target)


class _Training:
    """The patch on for a step, and the MLPs back in eval mode after it (previews run then)."""

    def __init__(self, patch: HypernetworkPatch, mlps: list) -> None:
        self.patch, self.mlps = patch, mlps

    def __enter__(self) -> "_Training":
        self.patch.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.patch.__exit__(*exc_info)
        for mlp in self.mlps:
            mlp.eval()
