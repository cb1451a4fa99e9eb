"""CLIP byte-pair tokenizer, offline.

SD1 (CLIP ViT-L/14), SD2 (OpenCLIP ViT-H) and SDXL (both towers) share one BPE vocabulary; open_clip
ships it inside its wheel (`bpe_simple_vocab_16e6.txt.gz`), so no model hub is needed.
"""
from __future__ import annotations

import functools

from open_clip.tokenizer import SimpleTokenizer, default_bpe


class ClipTokenizer:
    """Text <-> CLIP token ids. `encode` never adds the start/end tokens: the conditioning code
    builds the 77-token chunks itself. Building it reads the vocabulary (slow): build once, reuse."""

    def __init__(self, bpe_path: str | None = None) -> None:
        # context_length=None: open_clip must not truncate or pad; chunking is ours
        self._bpe = SimpleTokenizer(bpe_path=bpe_path or default_bpe(), context_length=None)
        self.bos_id: int = self._bpe.sot_token_id
        self.eos_id: int = self._bpe.eot_token_id
        self.comma_id: int = self._bpe.encoder[",</w>"]
        self.vocab_size: int = len(self._bpe.encoder)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (lower-cased, whitespace collapsed), without BOS/EOS."""
        return list(self._bpe.encode(text))

    def decode(self, token_ids: list[int]) -> str:
        """Text of token ids (BOS/EOS dropped); words joined by single spaces."""
        content = [token for token in token_ids if token not in (self.bos_id, self.eos_id)]
        return self._bpe.decode(content).strip()


@functools.lru_cache(maxsize=1)
def get_clip_tokenizer() -> ClipTokenizer:
    """The shared tokenizer built from open_clip's bundled vocabulary (cached: it never changes)."""
    return ClipTokenizer()
