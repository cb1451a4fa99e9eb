"""Alt-Diffusion's text tower: XLM-RoBERTa with a projection (AltCLIP's text side), as A1111 loads
it (`BertSeriesModelWithTransformation`), and the XLM-R tokenizer.

Keys under the checkpoint's `cond_stage_model.`: `roberta.*` (transformers' `XLMRobertaModel`,
which runs the tower), `transformation.*` (hidden → UNet context width), `pre_LN.*`, and in
AltDiffusion-m18 files `transformation_pre.*`. A1111's conditioning is
`transformation(last hidden state)`; with `transformation_pre` it is
`transformation_pre(pre_LN(penultimate hidden state))`. There is no clip skip: every layer is
1024 wide and only the projection speaks the UNet's language.

The tokenizer is xlm-roberta-large's `sentencepiece.bpe.model`, which the user supplies (nothing
is downloaded). XLM-R's ids are fairseq's: <s> 0, <pad> 1, </s> 2, <unk> 3, then each
sentencepiece piece at its id + 1, and <mask> last.
"""
from __future__ import annotations

from pathlib import Path

import sentencepiece
import torch
from torch import nn
from transformers import XLMRobertaConfig, XLMRobertaModel

from modules.engine.configs import TextEncoderConfig
from modules.engine.text_encoders import TextEncoderOutput

TOKENIZER_FILE = "sentencepiece.bpe.model"
BOS_ID, PAD_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
FAIRSEQ_OFFSET = 1          # sentencepiece id k is XLM-R id k + 1 (its <unk>, 0, maps to 3)
LAYER_NORM_EPS = 1e-5


class TokenizerFilesError(ValueError):
    """The XLM-R tokenizer file is missing or unreadable; the message names the folder."""


class XLMRobertaTokenizer:
    """Text ↔ XLM-R ids through sentencepiece, with the interface of `ClipTokenizer`: `encode`
    adds no <s> / </s>; the conditioning code builds the chunks. Case is kept (XLM-R's model is
    cased, unlike CLIP's)."""

    bos_id = BOS_ID
    eos_id = EOS_ID
    pad_id = PAD_ID

    def __init__(self, model_file: Path) -> None:
        try:
            self._sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        except (OSError, RuntimeError) as error:
            raise TokenizerFilesError(f"cannot read the XLM-R tokenizer {model_file}: {error}") \
                from error
        self.vocab_size: int = self._sp.get_piece_size() + FAIRSEQ_OFFSET + 1   # + <mask>
        comma = self._sp.piece_to_id(",")
        # A1111 takes the id of the bare "," piece (XLM-R has no end-of-word marks on commas)
        self.comma_id: int = comma + FAIRSEQ_OFFSET if comma != self._sp.unk_id() else -1

    @classmethod
    def from_folder(cls, folder: Path) -> "XLMRobertaTokenizer":
        model_file = Path(folder) / TOKENIZER_FILE
        if not model_file.is_file():
            raise TokenizerFilesError(
                f"an Alt-Diffusion checkpoint needs the xlm-roberta-large tokenizer: "
                f"put its {TOKENIZER_FILE} in {folder}")
        return cls(model_file)

    def _to_xlmr(self, piece_id: int) -> int:
        return UNK_ID if piece_id == self._sp.unk_id() else piece_id + FAIRSEQ_OFFSET

    def encode(self, text: str) -> list[int]:
        return [self._to_xlmr(piece_id) for piece_id in self._sp.encode(text)]

    def decode(self, token_ids: list[int]) -> str:
        pieces = [token - FAIRSEQ_OFFSET for token in token_ids
                  if token not in (BOS_ID, PAD_ID, EOS_ID, UNK_ID) and token < self.vocab_size - 1]
        return self._sp.decode(pieces).strip()


class XLMRobertaTextEncoder(nn.Module):
    """`roberta` + `transformation` (+ `pre_LN`, `transformation_pre`), built from a
    `TextEncoderConfig` of kind "xlm_roberta"; `encode` as the CLIP encoders' (the layer
    arguments are accepted and ignored: A1111 has no clip skip for these models)."""

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        if config.projection_dim is None:
            raise ValueError("an XLM-R text encoder needs its projection width")
        self.config = config
        roberta_config = XLMRobertaConfig(
            vocab_size=config.vocab_size, hidden_size=config.width,
            num_hidden_layers=config.layers, num_attention_heads=config.heads,
            intermediate_size=config.intermediate, max_position_embeddings=config.max_positions,
            type_vocab_size=1, pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
            layer_norm_eps=LAYER_NORM_EPS, hidden_act=config.act,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        self.roberta = XLMRobertaModel(roberta_config, add_pooling_layer=config.pooler)
        self.transformation = nn.Linear(config.width, config.projection_dim)
        self.pre_LN = nn.LayerNorm(config.width, eps=LAYER_NORM_EPS)
        if config.pre_transformation:
            self.transformation_pre = nn.Linear(config.width, config.projection_dim)

    def reset_non_persistent_buffers(self) -> None:
        """Recompute the position / token-type id buffers (not in files; after a meta build)."""
        embeddings = self.roberta.embeddings
        device = embeddings.word_embeddings.weight.device
        positions = torch.arange(self.config.max_positions, device=device)[None]
        embeddings.position_ids = positions
        embeddings.token_type_ids = torch.zeros_like(positions)

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.roberta.embeddings.word_embeddings(tokens)

    def encode(self, tokens: torch.Tensor, *, layer: int = -1, final_norm: bool = True,
               token_embeddings: torch.Tensor | None = None) -> TextEncoderOutput:
        """Projected features [B, T, projection_dim] of `tokens` (padding masked out, as A1111);
        `token_embeddings` replaces the looked-up input vectors (textual inversion)."""
        not_padding = tokens != PAD_ID
        # XLM-R numbers positions from pad + 1 and gives padding the pad position; passed
        # explicitly so replaced input vectors get the same positions as looked-up ones
        positions = torch.cumsum(not_padding, dim=1) * not_padding + PAD_ID
        inputs = {"inputs_embeds": token_embeddings} if token_embeddings is not None \
            else {"input_ids": tokens}
        output = self.roberta(attention_mask=not_padding.long(), position_ids=positions,
                              output_hidden_states=True, **inputs)
        if self.config.pre_transformation:
            hidden = self.transformation_pre(self.pre_LN(output.hidden_states[-2]))
        else:
            hidden = self.transformation(output.last_hidden_state)
        return TextEncoderOutput(hidden, None)
