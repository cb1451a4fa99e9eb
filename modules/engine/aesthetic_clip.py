"""Aesthetic gradients (Gallego 2022, as A1111's aesthetic-gradients extension runs them).

An aesthetic embedding is the mean CLIP image embedding of a set of pictures (a `[1, D]` tensor
in a `.pt` file). For each prompt chunk the job encodes, a copy of CLIP's text tower is trained
for a few Adam steps so the chunk's CLIP text features move towards that embedding; the copy's
hidden states at the clip-skip layer are then blended into the model's own conditioning by the
aesthetic weight (linearly, or by slerp). The CLIP is the user's (OpenAI / open_clip layout, the
CLIP interrogator's weights); its text tower must be the model's text encoder architecture
(CLIP ViT-L/14 for SD1.x). Nothing of the loaded model is changed: the copy is thrown away.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from PIL import Image
from torch import nn

from modules.engine.checkpoint_io import read_pickle
from modules.engine.text_encoders import open_clip_layer_outputs, pool_at_eos

EMBEDDING_SUFFIX = ".pt"


class AestheticError(ValueError):
    """An aesthetic embedding or the CLIP it needs cannot be used; the message says why."""


@dataclass(frozen=True)
class AestheticSettings:
    """The extension's fields (A1111's names in the infotext: Aesthetic weight, steps, LR, …)."""
    weight: float = 0.9
    steps: int = 5
    learning_rate: float = 0.0001
    slerp: bool = False
    text: str = ""
    slerp_angle: float = 0.1
    text_negative: bool = False

    @property
    def active(self) -> bool:
        """A1111 skips the whole step when any of weight, steps, learning rate is 0."""
        return self.weight != 0 and self.steps != 0 and self.learning_rate != 0


def slerp(low: torch.Tensor, high: torch.Tensor, value: float) -> torch.Tensor:
    """Spherical interpolation between the rows (last axis) of `low` and `high`, which keep
    their lengths' blend (A1111's formula; `high` broadcasts over `low`'s rows)."""
    low_unit = low / low.norm(dim=-1, keepdim=True)
    high_unit = high / high.norm(dim=-1, keepdim=True)
    omega = torch.acos((low_unit * high_unit).sum(-1).clamp(-1.0, 1.0))
    sine = torch.sin(omega).clamp_min(1e-8)
    return (torch.sin((1.0 - value) * omega) / sine).unsqueeze(-1) * low \
        + (torch.sin(value * omega) / sine).unsqueeze(-1) * high


def read_aesthetic_embedding(path: Path, *, allow_unsafe_pickle: bool = False) -> torch.Tensor:
    """The unit-length `[1, D]` embedding of a `.pt` file (a tensor, as the extension saves)."""
    loaded = read_pickle(path, allow_unsafe_pickle=allow_unsafe_pickle)
    if not isinstance(loaded, torch.Tensor) or not loaded.is_floating_point():
        raise AestheticError(f"{path.name} is not an aesthetic embedding (a float tensor)")
    embedding = loaded.float().reshape(1, -1) if loaded.dim() == 1 else loaded.float()
    if embedding.dim() != 2 or embedding.shape[0] != 1:
        raise AestheticError(f"{path.name} holds a {tuple(loaded.shape)} tensor, not [1, D]")
    return embedding / embedding.norm(dim=-1, keepdim=True)


def _trainable_copy(module: nn.Module) -> nn.Module:
    """A copy whose parameters are new leaf tensors (a model loaded under inference mode has
    parameters autograd cannot use)."""
    copied = copy.deepcopy(module)
    for owner in copied.modules():
        for name, parameter in list(owner._parameters.items()):
            if parameter is not None:
                owner._parameters[name] = nn.Parameter(parameter.detach().clone())
    return copied


class ClipTextTower(nn.Module):
    """A trainable copy of an open_clip `CLIP`'s text side (OpenAI layout): token and position
    embeddings, the transformer, `ln_final` and `text_projection`."""

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        with torch.inference_mode(False):      # trainable tensors even when copied in a job
            self.token_embedding = _trainable_copy(clip_model.token_embedding)
            self.positional_embedding = nn.Parameter(
                clip_model.positional_embedding.detach().clone())
            self.transformer = _trainable_copy(clip_model.transformer)
            self.ln_final = _trainable_copy(clip_model.ln_final)
            self.text_projection = nn.Parameter(clip_model.text_projection.detach().clone())
            self.register_buffer("attn_mask", clip_model.attn_mask.detach().clone(),
                                 persistent=False)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """CLIP's text features: the final-normed state at each row's EOS, projected."""
        last = self.ln_final(open_clip_layer_outputs(self, tokens)[-1])
        return pool_at_eos(last, tokens) @ self.text_projection

    def conditioning(self, tokens: torch.Tensor, clip_skip: int) -> torch.Tensor:
        """The hidden states SD conditions on: layer -clip_skip, final LayerNorm applied."""
        outputs = open_clip_layer_outputs(self, tokens)
        return self.ln_final(outputs[-min(max(1, clip_skip), len(outputs))])


def tuned_conditioning(clip_model: nn.Module, tokens: torch.Tensor, embedding: torch.Tensor,
                       settings: AestheticSettings, *, clip_skip: int = 1,
                       text_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Train a copy of the text tower towards `embedding` on `tokens` ([B, 77] chunk ids) for
    `settings.steps` Adam steps and return its conditioning for them ([B, 77, width], float32).
    `text_tokens` (the "Aesthetic text") first turns the target towards that text by slerp."""
    device = clip_model.positional_embedding.device
    with torch.inference_mode(False), torch.enable_grad():
        tower = ClipTextTower(clip_model).float().train()
        tokens = tokens.to(device).clone()
        target = embedding.to(device).clone()
        if text_tokens is not None:
            text_features = tower.features(text_tokens.to(device).clone())
            if settings.text_negative:
                text_features = target - text_features
                text_features = text_features / text_features.norm(dim=-1, keepdim=True)
            target = slerp(target, text_features, settings.slerp_angle)
        target = target.detach()
        trained = [p for name, p in tower.named_parameters() if name != "text_projection"]
        optimizer = torch.optim.Adam(trained, lr=settings.learning_rate)
        for _ in range(settings.steps):
            features = tower.features(tokens)
            features = features / features.norm(dim=-1, keepdim=True)
            loss = -(features @ target.T).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            return tower.conditioning(tokens, clip_skip).float()


def blend(features: torch.Tensor, tuned: torch.Tensor, settings: AestheticSettings) -> torch.Tensor:
    """The model's conditioning moved towards the tuned tower's by the aesthetic weight."""
    tuned = tuned.to(device=features.device, dtype=features.dtype)
    if settings.slerp:
        return slerp(features, tuned, settings.weight)
    return features * (1 - settings.weight) + tuned * settings.weight


def image_embedding(encode_images: Callable[[list[Image.Image]], torch.Tensor],
                    images: Iterable[Image.Image], batch_size: int = 32,
                    should_stop: Callable[[], bool] = lambda: False) -> tuple[torch.Tensor, int]:
    """The mean of the CLIP image features of `images` ([1, D]) and how many were used;
    `encode_images` gives the raw (unnormalised) features of a list of pictures."""
    total, count, batch = None, 0, []

    def flush() -> None:
        nonlocal total, count
        with torch.inference_mode():
            features = encode_images(batch).float().cpu()
        total = features.sum(0, keepdim=True) if total is None else total + features.sum(0)
        count += len(batch)
        batch.clear()

    for image in images:
        if should_stop():
            break
        batch.append(image)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    if total is None:
        raise AestheticError("no images to make an aesthetic embedding of")
    return total / count, count


def check_text_tower_fits(clip_model: Any, width: int) -> None:
    """AestheticError unless the CLIP's text tower is `width` wide (the model's text encoder)."""
    clip_width = int(clip_model.positional_embedding.shape[-1])
    if clip_width != width:
        raise AestheticError(f"the CLIP's text tower is {clip_width} wide but this model's text "
                             f"encoder {width}: aesthetic gradients need the model's own CLIP "
                             f"(ViT-L/14 for SD1.x)")
