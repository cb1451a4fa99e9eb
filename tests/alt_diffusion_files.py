"""A tiny XLM-R tokenizer for Alt-Diffusion tests: a sentencepiece BPE model of 120 pieces trained
here on a few multilingual captions, saved as `sentencepiece.bpe.model` (the file name of
xlm-roberta-large's), and the tiny Alt-Diffusion checkpoint beside it."""
from __future__ import annotations

from pathlib import Path

import sentencepiece

from tests.engine.tiny_checkpoints import write_tiny_checkpoint

CAPTIONS = (
    "a photo of a cat, sitting on a red chair",
    "ein Foto einer Katze auf einem roten Stuhl",
    "un chat assis sur une chaise rouge",
    "一只猫坐在红色的椅子上",
    "a lighthouse at night, stars over the ocean",
    "portrait of a woman, oil painting, golden light",
)
PIECES = 120


def write_tiny_xlmr_tokenizer(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(CAPTIONS * 40), encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "sentencepiece.bpe"), vocab_size=PIECES,
        # ids 0-2 are <unk>, <s>, </s> as in xlm-roberta-large's model
        model_type="bpe", character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, minloglevel=2)
    corpus.unlink()
    (folder / "sentencepiece.bpe.vocab").unlink()
    return folder / "sentencepiece.bpe.model"


def write_alt_diffusion(models: Path, name: str = "tiny-alt.safetensors", seed: int = 0) -> Path:
    """models/Stable-diffusion/<name> and models/xlm-roberta-large/sentencepiece.bpe.model."""
    write_tiny_xlmr_tokenizer(models / "xlm-roberta-large")
    (models / "Stable-diffusion").mkdir(parents=True, exist_ok=True)
    return write_tiny_checkpoint(models / "Stable-diffusion" / name, "alt", seed=seed)
