"""The CLIP text towers of SD checkpoints, with the key names the files use.

* `CLIPTextEncoder`: transformers `CLIPTextModel` (OpenAI CLIP ViT-L/14 text tower of SD1.x and
  SDXL), keys `transformer.text_model.*`.
* `OpenCLIPTextEncoder`: open_clip `TextTransformer` (ViT-H of SD2.x, ViT-bigG of SDXL), keys
  `model.*`.

Both are built from a `TextEncoderConfig` only (never from a model hub) and share
`encode(tokens, layer=..., final_norm=...) -> TextEncoderOutput`.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from open_clip.transformer import TextTransformer
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel

from modules.engine.configs import TextEncoderConfig

# open_clip's initial logit scale, ln(1 / 0.07); only used when a file lacks `logit_scale`
OPEN_CLIP_LOGIT_SCALE_INIT = math.log(1 / 0.07)


class TextEncoderOutput(NamedTuple):
    hidden: torch.Tensor              # [B, T, width]
    pooled: torch.Tensor | None       # [B, projection_dim or width]


def pool_at_eos(normed_last: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    # EOS has the highest id of the CLIP vocabulary, so argmax finds it (CLIP's own rule)
    eos_positions = tokens.argmax(dim=-1)
    return normed_last[torch.arange(normed_last.shape[0], device=normed_last.device), eos_positions]


def _check_layer(layer: int, layer_count: int) -> None:
    if not -layer_count <= layer <= -1:
        raise ValueError(f"layer must be in [-{layer_count}, -1], got {layer}")


class _TextModelHolder(nn.Module):
    """Places the transformers model at `text_model`, the attribute path SD files use
    (`transformer.text_model.*`); transformers 5 `CLIPTextModel` keys lack that level."""

    def __init__(self, text_config: CLIPTextConfig):
        super().__init__()
        self.text_model = CLIPTextModel(text_config)


class CLIPTextEncoder(nn.Module):
    """OpenAI CLIP text tower in the transformers layout (SD1.x `cond_stage_model`, SDXL
    `conditioner.embedders.0`). `position_ids` in a file is accepted and ignored."""

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.config = config
        text_config = CLIPTextConfig(
            vocab_size=config.vocab_size, hidden_size=config.width,
            num_hidden_layers=config.layers, num_attention_heads=config.heads,
            intermediate_size=config.intermediate, max_position_embeddings=config.max_positions,
            hidden_act=config.act, projection_dim=config.projection_dim or config.width,
        )
        self.transformer = _TextModelHolder(text_config)
        self.register_load_state_dict_pre_hook(_drop_position_ids)

    @property
    def text_model(self) -> CLIPTextModel:
        return self.transformer.text_model

    def reset_non_persistent_buffers(self) -> None:
        """Recompute buffers that are not stored in files (needed after a meta-device build)."""
        embeddings = self.text_model.embeddings
        device = embeddings.token_embedding.weight.device
        embeddings.position_ids = torch.arange(self.config.max_positions, device=device)[None]

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """The input vectors of `tokens` [B, T] → [B, T, width] (before position embeddings)."""
        return self.text_model.embeddings.token_embedding(tokens)

    def encode(self, tokens: torch.Tensor, *, layer: int = -1, final_norm: bool = True,
               token_embeddings: torch.Tensor | None = None) -> TextEncoderOutput:
        """Hidden states of transformer layer `layer` (-1 last, -2 penultimate, ...).
        `token_embeddings` replaces the looked-up input vectors (textual inversion); `tokens`
        still places the EOS that is pooled."""
        _check_layer(layer, self.config.layers)
        handle = None
        if token_embeddings is not None:
            # the text model takes ids only: its embedding layer's output is swapped for the call
            handle = self.text_model.embeddings.token_embedding.register_forward_hook(
                lambda module, inputs, output: token_embeddings.to(output.dtype))
        try:
            output = self.text_model(input_ids=tokens, output_hidden_states=True)
        finally:
            if handle is not None:
                handle.remove()
        # hidden_states = (embeddings, layer 1, ..., layer N), all before the final LayerNorm
        hidden = output.hidden_states[layer]
        if final_norm:
            hidden = self.text_model.final_layer_norm(hidden)
        pooled = pool_at_eos(output.last_hidden_state, tokens)
        return TextEncoderOutput(hidden, pooled)


def _drop_position_ids(module: nn.Module, state_dict: dict[str, Any], prefix: str,
                       *args: Any) -> None:
    # Files written with transformers < 4.31 store this non-weight buffer; some merges corrupt it.
    # load_state_dict works on its own copy of the dict, so popping leaves the caller's intact.
    state_dict.pop(f"{prefix}transformer.text_model.embeddings.position_ids", None)


def open_clip_layer_outputs(tower: nn.Module, tokens: torch.Tensor,
                            token_embeddings: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Each residual block's output for `tokens` [B, T] in an open_clip-layout text tower (its
    `token_embedding`, `positional_embedding`, causal `attn_mask`, `transformer.resblocks`: an
    open_clip TextTransformer or a whole CLIP model); `token_embeddings` replaces the looked-up
    input vectors."""
    if token_embeddings is None:
        token_embeddings = tower.token_embedding(tokens)
    x = token_embeddings + tower.positional_embedding[: tokens.shape[1]]
    causal_mask = tower.attn_mask[: tokens.shape[1], : tokens.shape[1]].to(x.dtype)
    outputs = []
    for block in tower.transformer.resblocks:
        x = block(x, attn_mask=causal_mask)
        outputs.append(x)
    return outputs


class _SDTextTransformer(TextTransformer):
    """open_clip's text tower plus the `logit_scale` scalar that SD files keep from the CLIP
    model this tower came from (not used for conditioning)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.logit_scale = nn.Parameter(torch.full((), OPEN_CLIP_LOGIT_SCALE_INIT))


class OpenCLIPTextEncoder(nn.Module):
    """OpenCLIP text tower (SD2.x `cond_stage_model`, SDXL `conditioner.embedders.1`)."""

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        if config.act != "gelu":
            raise ValueError(f"OpenCLIP text towers use gelu, got {config.act!r}")
        self.config = config
        self.model = _SDTextTransformer(
            context_length=config.max_positions, vocab_size=config.vocab_size,
            width=config.width, heads=config.heads, layers=config.layers,
            mlp_ratio=config.intermediate / config.width,
            output_dim=config.projection_dim, proj_type="linear" if config.projection_dim else "none",
            pad_id=config.pad_token,
        )
        mlp_width = self.model.transformer.resblocks[0].mlp.c_fc.out_features
        if mlp_width != config.intermediate:
            raise ValueError(f"intermediate {config.intermediate} is not a whole multiple of the "
                             f"width {config.width} that open_clip can build (got {mlp_width})")

    def reset_non_persistent_buffers(self) -> None:
        """Recompute the causal mask (not stored in files; needed after a meta-device build)."""
        device = self.model.token_embedding.weight.device
        self.model.attn_mask = self.model.build_causal_mask().to(device)

    def reset_logit_scale(self) -> None:
        """Give `logit_scale` open_clip's initial value (for files that lack it)."""
        device = self.model.token_embedding.weight.device
        self.model.logit_scale = nn.Parameter(
            torch.full((), OPEN_CLIP_LOGIT_SCALE_INIT, device=device), requires_grad=False)

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """The input vectors of `tokens` [B, T] → [B, T, width] (before position embeddings)."""
        return self.model.token_embedding(tokens)

    def encode(self, tokens: torch.Tensor, *, layer: int = -1, final_norm: bool = True,
               token_embeddings: torch.Tensor | None = None) -> TextEncoderOutput:
        """Hidden states of transformer layer `layer` (-1 last, -2 penultimate, ...);
        `token_embeddings` replaces the looked-up input vectors (textual inversion)."""
        _check_layer(layer, self.config.layers)
        model = self.model
        layer_outputs = open_clip_layer_outputs(model, tokens, token_embeddings)
        hidden = layer_outputs[layer]
        if final_norm:
            hidden = model.ln_final(hidden)
        pooled = pool_at_eos(model.ln_final(layer_outputs[-1]), tokens)
        if model.text_projection is not None:
            pooled = pooled @ model.text_projection
        return TextEncoderOutput(hidden, pooled)
