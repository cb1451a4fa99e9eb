"""DeepDanbooru's tagger (resnet_custom_v3, the `model-resnet_custom_v3.pt` A1111 users have in
models/torch_deepdanbooru): a ResNet of bottleneck blocks whose convolutions are stored as
`n_Conv_<i>` in the order the original graph created them, plus the tag names under `tags`.

The network is rebuilt from the shapes: after the 7×7 stem, each block is 1×1 → 3×3 → 1×1 with a
residual; a block whose output width differs from its input, or that halves the resolution,
has a 1×1 projection, stored just before the block or (once in v3) just after it. Padding
follows TensorFlow's "same" rule, which the weights were trained with.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

CONV_KEY = re.compile(r"^n_Conv_(\d+)\.weight$")
INPUT_SIZE = 512


class DeepDanbooruError(ValueError):
    """A file that is not a DeepDanbooru torch model (the message says why)."""


@dataclass(frozen=True)
class Block:
    convs: tuple[int, int, int]     # 1×1 reduce, 3×3, 1×1 expand
    projection: int | None          # the shortcut's 1×1 conv, or None for an identity
    stride: int


def _plan(shapes: Mapping[int, tuple[int, ...]]) -> tuple[list[Block], int]:
    """The blocks and the index of the final (tag) convolution, from the conv shapes."""
    count = len(shapes)
    if list(shapes) != list(range(count)) or count < 5 or shapes[0][2:] != (7, 7):
        raise DeepDanbooruError("the n_Conv_ layers do not form a DeepDanbooru ResNet")
    blocks: list[Block] = []
    channels = shapes[0][0]
    index = 1
    while index < count - 1:
        out, inp, kh, _ = shapes[index]
        leading = (kh == 1 and inp == channels and index + 1 < count - 1
                   and shapes[index + 1][1] == channels and shapes[index + 3][0] == out)
        first = index + 1 if leading else index
        reduce, middle, expand = first, first + 1, first + 2
        if expand >= count or shapes[middle][2:] != (3, 3):
            raise DeepDanbooruError(f"n_Conv_{first}: not a bottleneck block")
        width = shapes[expand][0]
        projection: int | None = index if leading else None
        after = expand + 1
        if projection is None and after < count - 1 and shapes[after][2:] == (1, 1) \
                and shapes[after][0] == width and shapes[after][1] == channels:
            projection = after                        # stored after its block
        stride = 2 if projection is not None and blocks else 1
        blocks.append(Block((reduce, middle, expand), projection, stride))
        channels = width
        index = max(expand, projection or 0) + 1
    return blocks, count - 1


class DeepDanbooruNet(torch.nn.Module):
    def __init__(self, state: Mapping[str, torch.Tensor], tags: list[str]) -> None:
        super().__init__()
        shapes = {int(m.group(1)): tuple(value.shape) for key, value in state.items()
                  if (m := CONV_KEY.match(key))}
        shapes = dict(sorted(shapes.items()))
        self.blocks, self.final = _plan(shapes)
        if shapes[self.final][0] != len(tags):
            raise DeepDanbooruError(f"the model has {shapes[self.final][0]} outputs for "
                                    f"{len(tags)} tags")
        self.tags = list(tags)
        self.weights = torch.nn.ParameterDict(
            {key.replace(".", "_"): torch.nn.Parameter(value.float(), requires_grad=False)
             for key, value in state.items() if key.startswith("n_Conv_")})

    def _conv(self, index: int, x: torch.Tensor, stride: int = 1,
              pad: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        if pad is not None:
            x = F.pad(x, pad)
        bias = self.weights[f"n_Conv_{index}_bias"] \
            if f"n_Conv_{index}_bias" in self.weights else None
        return F.conv2d(x, self.weights[f"n_Conv_{index}_weight"], bias, stride=stride)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] → [N, tags] probabilities."""
        x = F.relu(self._conv(0, pixels, 2, (2, 3, 2, 3)))
        x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, 2)
        for block in self.blocks:
            reduce, middle, expand = block.convs
            shortcut = x if block.projection is None \
                else self._conv(block.projection, x, block.stride)
            y = F.relu(self._conv(reduce, x))
            # TensorFlow "same": stride 2 pads only after; stride 1 on both sides
            pad = (0, 1, 0, 1) if block.stride == 2 else (1, 1, 1, 1)
            y = F.relu(self._conv(middle, y, block.stride, pad))
            x = F.relu(self._conv(expand, y) + shortcut)
        logits = self._conv(self.final, x).mean(dim=(2, 3))
        return torch.sigmoid(logits)

    @torch.inference_mode()
    def probabilities(self, image: Image.Image) -> dict[str, float]:
        """Tag → probability for an image (stretched to 512×512, as A1111 feeds it)."""
        picture = image.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE),
                                              Image.Resampling.LANCZOS)
        pixels = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255)
        parameter = next(iter(self.weights.values()))
        pixels = pixels.permute(2, 0, 1)[None].to(parameter.device, parameter.dtype)
        values = self(pixels)[0].float().cpu().tolist()
        return dict(zip(self.tags, values))


def build_deepdanbooru(data: Mapping) -> DeepDanbooruNet:
    """The tagger from a loaded `model-resnet_custom_v3.pt` (state dict with `tags`)."""
    tags = data.get("tags")
    if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
        raise DeepDanbooruError("the file has no list of tag names ('tags')")
    state = {key: value for key, value in data.items()
             if key != "tags" and isinstance(value, torch.Tensor)}
    if not any(CONV_KEY.match(key) for key in state):
        raise DeepDanbooruError("the file has no n_Conv_ layers")
    return DeepDanbooruNet(state, list(tags)).eval()
