"""The networks of A1111's CLIP interrogator: a BLIP captioner (transformers'
BlipForConditionalGeneration, from a folder in transformers' format) and a CLIP model (open_clip,
rebuilt from an OpenAI-layout state dict) that ranks lists of words against the image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from PIL import Image

#: the text BLIP continues (A1111's captioner starts from it and leaves it out of the caption)
CAPTION_PROMPT = "a picture of"


class InterrogatorModelError(ValueError):
    """Weights that cannot be loaded as the model they are meant to be (the message says why)."""


class BlipCaptioner:
    """A BLIP captioning model from a transformers folder (config.json, the weights, the
    tokenizer and preprocessor files)."""

    def __init__(self, folder: Path, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        from transformers import BlipForConditionalGeneration, BlipProcessor
        try:
            self.processor = BlipProcessor.from_pretrained(str(folder), local_files_only=True)
            model = BlipForConditionalGeneration.from_pretrained(str(folder),
                                                                 local_files_only=True)
        except (OSError, ValueError, KeyError) as error:
            raise InterrogatorModelError(f"{folder.name}: not a BLIP captioning model in "
                                         f"transformers' format ({error})") from error
        self.model = model.to(device, dtype).eval()
        self.device, self.dtype = device, dtype

    @torch.inference_mode()
    def caption(self, image: Image.Image, *, num_beams: int = 1, min_length: int = 24,
                max_length: int = 48) -> str:
        inputs = self.processor(images=image.convert("RGB"), text=CAPTION_PROMPT,
                                return_tensors="pt")
        input_ids = inputs["input_ids"].to(self.device)
        pixels = inputs["pixel_values"].to(self.device, self.dtype)
        # generate() starts the decoder from the prompt without its closing [SEP]
        prompt_length = input_ids.shape[1] - 1
        output = self.model.generate(pixel_values=pixels, input_ids=input_ids,
                                     attention_mask=inputs["attention_mask"].to(self.device),
                                     num_beams=num_beams, do_sample=False,
                                     min_length=min_length + prompt_length,
                                     max_length=max_length + prompt_length)
        text = self.processor.decode(output[0][prompt_length:], skip_special_tokens=True)
        return " ".join(text.split())


class ClipRanker:
    """A CLIP model (OpenAI's layout, as OpenAI's and open_clip's ViT checkpoints store it) that
    scores texts against an image."""

    def __init__(self, state: Mapping[str, torch.Tensor], device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        import open_clip
        from open_clip.model import build_model_from_openai_state_dict
        from open_clip.transform import image_transform
        state = {key.removeprefix("module."): value for key, value in state.items()}
        if "visual.conv1.weight" not in state or "token_embedding.weight" not in state:
            raise InterrogatorModelError("not a CLIP model in OpenAI's / open_clip's layout "
                                         "(no visual.conv1 / token_embedding weights)")
        try:
            model = build_model_from_openai_state_dict(dict(state))
        except (KeyError, RuntimeError, ValueError, AssertionError) as error:
            raise InterrogatorModelError(f"not a CLIP model open_clip can build ({error})") \
                from error
        self.model = model.float().to(device, dtype).eval()
        self.device, self.dtype = device, dtype
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(
            context_length=int(self.model.context_length))
        size = self.model.visual.image_size
        self.preprocess = image_transform(size if isinstance(size, int) else size[0],
                                          is_train=False)

    @torch.inference_mode()
    def image_features(self, image: Image.Image) -> torch.Tensor:
        pixels = self.preprocess(image.convert("RGB"))[None].to(self.device, self.dtype)
        features = self.model.encode_image(pixels).float()
        return features / features.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def rank(self, image_features: torch.Tensor, texts: list[str], top: int = 1,
             batch: int = 256) -> list[tuple[str, float]]:
        """The `top` texts that best describe the image, with their share (0-100) of a softmax
        over all of them (A1111's ranks)."""
        top = min(top, len(texts))
        if top <= 0:
            return []
        chunks = []
        for start in range(0, len(texts), batch):
            tokens = self.tokenizer(texts[start:start + batch]).to(self.device)
            features = self.model.encode_text(tokens).float()
            chunks.append(features / features.norm(dim=-1, keepdim=True))
        text_features = torch.cat(chunks)
        similarity = (100.0 * image_features @ text_features.T).softmax(dim=-1).mean(dim=0)
        scores, indices = similarity.topk(top)
        return [(texts[int(i)], float(score) * 100) for score, i in zip(scores, indices)]
