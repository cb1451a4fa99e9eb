"""Prompt text -> CLIP conditioning, the way AUTOMATIC1111 builds it (a1111-compat.md §6.6).

A prompt is parsed into weighted runs, tokenized, cut into 75-token chunks (`[BOS] + 75 + [EOS]`,
comma backtrack, `BREAK`), every chunk goes through the text encoder(s) on its own, the per-token
weights are applied to the outputs (emphasis), and the chunks are joined on the token axis.
SDXL also gets a `vector`: the pooled bigG output plus sinusoidal size / crop (/ aesthetic) embeddings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from modules.engine.cond_types import BatchConditioning, ComposableCond, Cond, ScheduledCond
from modules.engine.configs import TextEncoderConfig
from modules.engine.prompt_parser import (
    BREAK_MARKER,
    extract_extra_networks,
    get_learned_conditioning_prompt_schedules,
    parse_prompt_attention,
    split_composable,
)
from modules.engine.textual_inversion import Embedding, EmbeddingVocabulary
from modules.engine.tokenizer import ClipTokenizer
from modules.engine.unet import timestep_embedding

CHUNK_LENGTH = 75                  # content tokens per chunk; +BOS +EOS = 77
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")
SIZE_EMBEDDING_DIM = 256           # SDXL embeds each size / crop / score value into 256 channels
REFINER_POSITIVE_AESTHETIC = 6.0   # A1111 opts.sdxl_refiner_high_aesthetic_score
REFINER_NEGATIVE_AESTHETIC = 2.5   # A1111 opts.sdxl_refiner_low_aesthetic_score
DEFAULT_SDXL_SIZE = 1024           # A1111's size when a caller gives none

OutputHook = Callable[[torch.Tensor, torch.Tensor, TextEncoderConfig], torch.Tensor]


@dataclass(frozen=True)
class PromptChunk:
    """77 token ids (`[BOS] + 75 content-or-EOS + [EOS]`) and the weight of each position;
    `fixes`: (content offset, embedding) where textual-inversion vectors replace the inputs."""
    tokens: tuple[int, ...]
    multipliers: tuple[float, ...]
    fixes: tuple[tuple[int, Embedding], ...] = field(default=())


class _ChunkBuilder:
    """Accumulates weighted tokens into 75-token chunks (A1111's `tokenize_line`)."""

    def __init__(self, tokenizer: ClipTokenizer, comma_padding_backtrack: int) -> None:
        self.tokenizer = tokenizer
        self.backtrack = comma_padding_backtrack
        self.chunks: list[PromptChunk] = []
        self.token_count = 0       # what the UI counter shows
        self.tokens: list[int] = []
        self.weights: list[float] = []
        self.fixes: list[tuple[int, Embedding]] = []
        self.last_comma = -1       # index of the last comma in the open chunk

    def close_chunk(self, *, is_last: bool = False) -> None:
        # a full chunk counts 75 even when padded (BREAK, backtrack): the counter shows chunk use
        self.token_count += len(self.tokens) if is_last else CHUNK_LENGTH
        padding = CHUNK_LENGTH - len(self.tokens)
        bos, eos = self.tokenizer.bos_id, self.tokenizer.eos_id
        self.chunks.append(PromptChunk(
            tokens=(bos, *self.tokens, *[eos] * padding, eos),
            multipliers=(1.0, *self.weights, *[1.0] * padding, 1.0),
            fixes=tuple(self.fixes),
        ))
        self.tokens, self.weights, self.fixes, self.last_comma = [], [], [], -1

    def add(self, token: int, weight: float, embedding: Embedding | None = None) -> None:
        """One token, or (`embedding`: the first token of its name) the embedding's vectors,
        which never straddle two chunks."""
        if token == self.tokenizer.comma_id:
            self.last_comma = len(self.tokens)
        elif (self.backtrack and len(self.tokens) == CHUNK_LENGTH and self.last_comma != -1
              and CHUNK_LENGTH - self.last_comma <= self.backtrack):
            # the chunk is full: move the words after its last comma into the next chunk
            cut = self.last_comma + 1
            moved_tokens, moved_weights = self.tokens[cut:], self.weights[cut:]
            moved_fixes = [(offset - cut, e) for offset, e in self.fixes if offset >= cut]
            self.fixes = [(offset, e) for offset, e in self.fixes if offset < cut]
            del self.tokens[cut:], self.weights[cut:]
            self.close_chunk()
            self.tokens, self.weights, self.fixes = moved_tokens, moved_weights, moved_fixes
        if len(self.tokens) == CHUNK_LENGTH:
            self.close_chunk()
        if embedding is None:
            self.tokens.append(token)
            self.weights.append(weight)
            return
        if len(self.tokens) + embedding.count > CHUNK_LENGTH:
            self.close_chunk()
        self.fixes.append((len(self.tokens), embedding))
        self.tokens += [0] * embedding.count          # placeholders, replaced at encoding
        self.weights += [weight] * embedding.count


def tokenize_prompt(text: str, tokenizer: ClipTokenizer, *, emphasis: str = "Original",
                    comma_padding_backtrack: int = 20,
                    embeddings: EmbeddingVocabulary | None = None
                    ) -> tuple[list[PromptChunk], int]:
    """Chunks of one prompt text and its token count (A1111: full chunks count 75, the last its
    real length). emphasis "None" keeps brackets (and BREAK) as literal text. An embedding's
    name in the text takes the embedding's vectors' places."""
    runs = parse_prompt_attention(text) if emphasis != "None" else [(text, 1.0)]
    builder = _ChunkBuilder(tokenizer, comma_padding_backtrack)
    for run_text, weight in runs:
        if (run_text, weight) == BREAK_MARKER:
            builder.close_chunk()
            continue
        tokens = tokenizer.encode(run_text)
        position = 0
        while position < len(tokens):
            embedding, length = embeddings.find_at(tokens, position) if embeddings else (None, 0)
            builder.add(tokens[position], weight, embedding)
            position += length or 1
    if builder.tokens or not builder.chunks:
        builder.close_chunk(is_last=True)
    return builder.chunks, builder.token_count


def empty_chunk(tokenizer: ClipTokenizer) -> PromptChunk:
    """The chunk a shorter text gets when batched with a longer one (BOS then EOS everywhere)."""
    tokens = (tokenizer.bos_id, *[tokenizer.eos_id] * (CHUNK_LENGTH + 1))
    return PromptChunk(tokens=tokens, multipliers=(1.0,) * (CHUNK_LENGTH + 2))


def target_token_count(token_count: int) -> int:
    """The current limit shown next to the token count: 75, 150, 225, ..."""
    return math.ceil(max(token_count, 1) / CHUNK_LENGTH) * CHUNK_LENGTH


def encoder_token_ids(chunk: PromptChunk, *, eos_id: int, pad_token: int) -> list[int]:
    """The ids one encoder sees: OpenCLIP (pad_token 0) pads everything after the first EOS with
    its pad id; CLIP-L (pad_token = EOS) keeps the EOS padding."""
    tokens = list(chunk.tokens)
    if pad_token != eos_id:
        first_eos = tokens.index(eos_id)
        tokens[first_eos + 1:] = [pad_token] * (len(tokens) - first_eos - 1)
    return tokens


def apply_emphasis(hidden: torch.Tensor, multipliers: torch.Tensor, mode: str) -> torch.Tensor:
    """Scale each token's features by its weight. hidden [B, T, C], multipliers [B, T].
    "Original" then rescales so the mean over the whole batch is what it was before (means in
    float32; a zero mean, as from an all-zero encoder, is left unscaled instead of 0/0)."""
    if mode not in ("Original", "No norm"):
        return hidden
    weighted = hidden * multipliers.to(hidden.dtype).unsqueeze(-1)
    if mode == "No norm":
        return weighted
    new_mean = weighted.float().mean()
    if new_mean == 0:
        return weighted
    return weighted * (hidden.float().mean() / new_mean)


def size_embedding(values: list[float], *, device: torch.device | str) -> torch.Tensor:
    """SDXL's embedding of scalars (sizes, crop, aesthetic score): each value -> 256 sinusoidal
    channels, concatenated in order -> [len(values) * 256] float32."""
    as_tensor = torch.tensor(values, dtype=torch.float32, device=device)
    return timestep_embedding(as_tensor, SIZE_EMBEDDING_DIM).flatten()


def _module_device(module: nn.Module, *, fallback: torch.device) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else fallback


def _with_embeddings(call: "_EncoderCall", ids: torch.Tensor,
                     batch: list[PromptChunk]) -> torch.Tensor | None:
    """The chunks' input vectors with their embeddings' vectors in place (None: no embedding,
    the encoder looks the ids up itself)."""
    if not any(chunk.fixes for chunk in batch):
        return None
    vectors = call.encoder.token_embeddings(ids).clone()
    for row, chunk in enumerate(batch):
        for offset, embedding in chunk.fixes:
            own = embedding.for_encoder(call.config.kind, vectors.shape[-1])
            if own is not None:       # the vocabulary holds only embeddings that fit
                start = offset + 1    # after BOS
                vectors[row, start:start + own.shape[0]] = own.to(vectors)
    return vectors


@dataclass(frozen=True)
class _EncoderCall:
    """One text tower and which of its layers conditions the model."""
    encoder: nn.Module
    config: TextEncoderConfig
    layer: int
    final_norm: bool


class PromptEncoder:
    """Encodes prompt texts for one model. Holds a cache of encoded texts: make one per job (the
    cache must not outlive the weights, LoRA patches included)."""

    def __init__(self, model: Any, tokenizer: ClipTokenizer, *, emphasis: str = "Original",
                 clip_skip: int = 1, comma_padding_backtrack: int = 20,
                 sdxl_clip_l_skip: bool = False, sdxl_crop_top: int = 0, sdxl_crop_left: int = 0,
                 refiner_positive_aesthetic: float = REFINER_POSITIVE_AESTHETIC,
                 refiner_negative_aesthetic: float = REFINER_NEGATIVE_AESTHETIC,
                 embeddings: EmbeddingVocabulary | None = None,
                 output_hook: OutputHook | None = None) -> None:
        if emphasis not in EMPHASIS_MODES:
            raise ValueError(f"emphasis must be one of {EMPHASIS_MODES}, got {emphasis!r}")
        if clip_skip < 1:
            raise ValueError(f"clip_skip must be >= 1, got {clip_skip}")
        self.model = model
        self.tokenizer = tokenizer
        self.family: str = model.config.family
        self.emphasis = emphasis
        self.clip_skip = clip_skip
        self.comma_padding_backtrack = comma_padding_backtrack
        self.sdxl_clip_l_skip = sdxl_clip_l_skip
        self.sdxl_crop = (sdxl_crop_top, sdxl_crop_left)
        self.refiner_aesthetic = (refiner_positive_aesthetic, refiner_negative_aesthetic)
        self._calls = self._encoder_calls(list(model.text_encoders))
        self.embeddings = embeddings
        #: (chunk ids [B, 77], features [B, 77, C], tower config) → features, after emphasis:
        #: how a job changes what a text tower gives (aesthetic gradients)
        self.output_hook = output_hook
        #: the textual-inversion embeddings the encoded prompts used (for `TI hashes`)
        self.used_embeddings: dict[str, Embedding] = {}
        # (texts, zeroed) -> per text (crossattn [T, C], pooled [P] | None)
        self._cache: dict[tuple[tuple[str, ...], bool],
                          list[tuple[torch.Tensor, torch.Tensor | None]]] = {}

    # ---------------------------------------------------------------- which layers, per family
    def _encoder_calls(self, encoders: list[tuple[nn.Module, TextEncoderConfig]]) -> list[_EncoderCall]:
        family = self.family
        if encoders[0][1].kind == "xlm_roberta":
            # Alt-Diffusion: always the projection of the last layer (no clip skip)
            return [_EncoderCall(*encoders[0], layer=-1, final_norm=False)]
        if family == "sd1":
            # clip skip N: hidden state of layer -N, then the final LayerNorm
            return [_EncoderCall(*encoders[0], layer=-self.clip_skip, final_norm=True)]
        if family == "sd2":
            # the penultimate layer of the full 24-layer tower; files converted from diffusers store
            # only 23 layers, so detection records which stored layer that is
            encoder, config = encoders[0]
            return [_EncoderCall(encoder, config, layer=config.default_layer, final_norm=True)]
        if family == "sdxl":
            clip_l_layer = -self.clip_skip if self.sdxl_clip_l_skip else -2
            return [_EncoderCall(*encoders[0], layer=clip_l_layer, final_norm=False),
                    _EncoderCall(*encoders[1], layer=-2, final_norm=False)]
        if family == "sdxl_refiner":
            return [_EncoderCall(*encoders[-1], layer=-2, final_norm=False)]
        raise ValueError(f"unknown model family {family!r}")

    # ---------------------------------------------------------------- tokens
    def tokenize(self, text: str) -> tuple[list[PromptChunk], int]:
        """Chunks of `text` and its token count under this encoder's settings."""
        return tokenize_prompt(text, self.tokenizer, emphasis=self.emphasis,
                               comma_padding_backtrack=self.comma_padding_backtrack,
                               embeddings=self.embeddings)

    def count_tokens(self, text: str) -> tuple[int, int]:
        """(tokens used, current limit 75/150/...) for the UI token counter."""
        _, token_count = self.tokenize(text)
        return token_count, target_token_count(token_count)

    # ---------------------------------------------------------------- encoding
    @torch.no_grad()
    def _run_towers(self, texts: tuple[str, ...]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        return self._towers(texts)

    def encode_for_training(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(crossattn [B, T, C], pooled [B, P] or None) of `texts`, uncached and with autograd
        on, so a loss reaches embedding vectors that require grad (textual-inversion training)."""
        encoded = self._towers(tuple(texts))
        crossattn = torch.stack([item[0] for item in encoded])
        pooled = None if encoded[0][1] is None else torch.stack([item[1] for item in encoded])
        return crossattn, pooled

    def _towers(self, texts: tuple[str, ...]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Encode texts as one batch (as A1111 does for the texts of one prompt schedule: emphasis
        renormalises over the batch, shorter texts get empty chunks up to the longest)."""
        chunks_per_text = [self.tokenize(text)[0] for text in texts]
        for chunks in chunks_per_text:
            for chunk in chunks:
                self.used_embeddings.update((e.name, e) for _, e in chunk.fixes)
        chunk_count = max(len(chunks) for chunks in chunks_per_text)
        blank = empty_chunk(self.tokenizer)
        features: list[torch.Tensor] = []   # per tower [B, 77 * chunk_count, C]
        pooled: torch.Tensor | None = None
        for call in self._calls:
            device = _module_device(call.encoder, fallback=self.model.device)
            per_chunk: list[torch.Tensor] = []
            for index in range(chunk_count):
                batch = [chunks[index] if index < len(chunks) else blank for chunks in chunks_per_text]
                ids = torch.tensor(
                    [encoder_token_ids(chunk, eos_id=self.tokenizer.eos_id,
                                       pad_token=call.config.pad_token) for chunk in batch],
                    dtype=torch.long, device=device)
                replaced = _with_embeddings(call, ids, batch)
                extra = {"token_embeddings": replaced} if replaced is not None else {}
                output = call.encoder.encode(ids, layer=call.layer, final_norm=call.final_norm,
                                             **extra)
                multipliers = torch.tensor([chunk.multipliers for chunk in batch], device=device)
                hidden = apply_emphasis(output.hidden, multipliers, self.emphasis)
                if self.output_hook is not None:
                    hidden = self.output_hook(ids, hidden, call.config)
                per_chunk.append(hidden)
                if index == 0 and call.config.kind == "open_clip":
                    pooled = output.pooled   # SDXL's pooled text embedding: bigG, first chunk
            # --medvram may keep the towers elsewhere: results go where the UNet is
            features.append(torch.cat(per_chunk, dim=1).to(self.model.device))
        crossattn = torch.cat(features, dim=-1)  # SDXL: 768 + 1280 channels
        if pooled is not None:
            pooled = pooled.to(self.model.device)
        return [(crossattn[row], pooled[row] if pooled is not None else None)
                for row in range(len(texts))]

    def _encoded(self, texts: tuple[str, ...], zeroed: bool) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        key = (texts, zeroed)
        if key not in self._cache:
            encoded = self._run_towers(texts)
            if zeroed:
                encoded = [(torch.zeros_like(crossattn), None if pooled is None else torch.zeros_like(pooled))
                           for crossattn, pooled in encoded]
            self._cache[key] = encoded
        return self._cache[key]

    def make_vector(self, pooled: torch.Tensor | None, *, width: int, height: int,
                    is_negative: bool = False) -> torch.Tensor | None:
        """SDXL `y` (label_emb input). Base: pooled 1280 + (orig h, w) + (crop top, left) +
        (target h, w) -> 2816. Refiner: pooled + (orig h, w) + (crop) + aesthetic -> 2560.
        A1111 uses the image size as both original and target size. None for SD1/SD2."""
        if not self.model.config.is_sdxl:
            return None
        if pooled is None:
            raise ValueError("SDXL conditioning needs the pooled text embedding")
        crop_top, crop_left = self.sdxl_crop
        if self.family == "sdxl":
            values = [height, width, crop_top, crop_left, height, width]
        else:
            positive_score, negative_score = self.refiner_aesthetic
            values = [height, width, crop_top, crop_left, negative_score if is_negative else positive_score]
        sizes = size_embedding([float(value) for value in values], device=pooled.device)
        return torch.cat([pooled, sizes.to(pooled.dtype)])

    def encode_texts(self, texts: list[str], *, width: int = DEFAULT_SDXL_SIZE,
                     height: int = DEFAULT_SDXL_SIZE, is_negative: bool = False) -> list[Cond]:
        """Encode texts together (one prompt's schedule). SDXL: an all-empty negative prompt gives
        zero text features, as A1111 does (force_zero_embeddings)."""
        zeroed = self.model.config.is_sdxl and is_negative and all(text == "" for text in texts)
        return [Cond(crossattn=crossattn,
                     vector=self.make_vector(pooled, width=width, height=height, is_negative=is_negative))
                for crossattn, pooled in self._encoded(tuple(texts), zeroed)]

    def encode(self, text: str, *, width: int = DEFAULT_SDXL_SIZE, height: int = DEFAULT_SDXL_SIZE,
               is_negative: bool = False) -> Cond:
        """One text -> Cond(crossattn [77 * chunks, C], vector [adm] for SDXL else None)."""
        return self.encode_texts([text], width=width, height=height, is_negative=is_negative)[0]

    def encode_schedule(self, schedule: list[tuple[int, str]], *, width: int, height: int,
                        is_negative: bool = False) -> ScheduledCond:
        """(end_at_step, text) pairs -> ScheduledCond of encoded texts."""
        texts = [text for _, text in schedule]
        conds = self.encode_texts(texts, width=width, height=height, is_negative=is_negative)
        return ScheduledCond(entries=[(end_at_step, cond) for (end_at_step, _), cond in zip(schedule, conds)])


def build_batch_conditioning(encoder: PromptEncoder, prompts: list[str], negative_prompts: list[str],
                             steps: int, *, width: int, height: int, hires_steps: int | None = None,
                             use_old_scheduling: bool = False) -> BatchConditioning:
    """Conditioning of one batch: per image, the positive prompt is split on AND (weighted parts),
    each part expanded into its prompt-editing schedule and encoded; the negative prompt is
    scheduled too, but never AND-split. `steps`/`hires_steps` as in
    `get_learned_conditioning_prompt_schedules` (pass the hires steps for the hires pass)."""
    if len(prompts) != len(negative_prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(negative_prompts)} negative prompts")

    def scheduled(texts: list[str], is_negative: bool) -> dict[str, ScheduledCond]:
        unique = list(dict.fromkeys(texts))
        schedules = get_learned_conditioning_prompt_schedules(unique, steps, hires_steps, use_old_scheduling)
        return {text: encoder.encode_schedule(schedule, width=width, height=height, is_negative=is_negative)
                for text, schedule in zip(unique, schedules)}

    parts_per_prompt = [split_composable(prompt) for prompt in prompts]
    positive = scheduled([text for parts in parts_per_prompt for text, _ in parts], is_negative=False)
    negative = scheduled(list(negative_prompts), is_negative=True)
    conds = [ComposableCond(parts=[(positive[text], weight) for text, weight in parts])
             for parts in parts_per_prompt]
    return BatchConditioning(conds=conds, unconds=[negative[text] for text in negative_prompts])


def count_prompt_tokens(encoder: PromptEncoder, prompt: str, steps: int, *,
                        is_positive: bool = True) -> tuple[int, int]:
    """A1111's UI token counter for a whole prompt: extra-network tags removed, AND-split (positive
    prompts only), every text of the prompt-editing schedule counted; the longest one is shown.
    Returns (tokens, limit 75/150/...). Comments are the caller's to strip first."""
    text, _ = extract_extra_networks(prompt)
    texts = [part for part, _ in split_composable(text)] if is_positive else [text]
    schedules = get_learned_conditioning_prompt_schedules(texts, steps)
    counts = [encoder.count_tokens(scheduled)[0] for schedule in schedules for _, scheduled in schedule]
    longest = max(counts)
    return longest, target_token_count(longest)
