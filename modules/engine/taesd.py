"""TAESD: the tiny autoencoder's decoder (madebyollin/taesd), used for fast live previews.

The network is a plain `nn.Sequential` so its state-dict keys are the ones the released
`taesd_decoder.*` / `taesdxl_decoder.*` files use ("1.weight", "3.conv.0.weight", "3.skip…"),
and they load strictly without renaming. It takes latents as the UNet produces them (already
multiplied by the VAE scaling factor) and returns images in [0, 1].
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from modules.engine.checkpoint_io import read_state_dict

TAESD_WIDTH = 64
#: decoder file stems A1111 looks for in models/VAE-approx, per architecture
TAESD_DECODER_STEMS = {"sd": "taesd_decoder", "sdxl": "taesdxl_decoder"}
TAESD_EXTENSIONS = (".safetensors", ".pth")


def _conv3x3(n_in: int, n_out: int, *, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, kernel_size=3, padding=1, bias=bias)


class SoftClamp(nn.Module):
    """Squashes latents smoothly into (-3, 3) before decoding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class TAESDBlock(nn.Module):
    """Three 3x3 convs with ReLUs, a residual path (1x1 conv when the width changes), ReLU."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv3x3(n_in, n_out), nn.ReLU(), _conv3x3(n_out, n_out),
                                  nn.ReLU(), _conv3x3(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + self.skip(x))


class TAESDDecoder(nn.Sequential):
    """Latent [B, C, h, w] → image [B, 3, 8h, 8w] in [0, 1] (three 2x upsamplings)."""

    def __init__(self, latent_channels: int = 4, width: int = TAESD_WIDTH) -> None:
        layers: list[nn.Module] = [SoftClamp(), _conv3x3(latent_channels, width), nn.ReLU()]
        for _ in range(3):
            layers += [TAESDBlock(width, width) for _ in range(3)]
            layers += [nn.Upsample(scale_factor=2), _conv3x3(width, width, bias=False)]
        layers += [TAESDBlock(width, width), _conv3x3(width, 3)]
        super().__init__(*layers)
        self.latent_channels = latent_channels

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Decode in the network's own dtype/device; float32 result clamped to [0, 1]."""
        weight = self[1].weight
        with torch.inference_mode():
            image = self(latent.to(weight.device, weight.dtype)).float()
        return image.clamp(0, 1)


def taesd_family(is_sdxl: bool) -> str:
    return "sdxl" if is_sdxl else "sd"


def taesd_decoder_stem(is_sdxl: bool) -> str:
    """The decoder file's stem for the architecture ("taesd_decoder" / "taesdxl_decoder")."""
    return TAESD_DECODER_STEMS[taesd_family(is_sdxl)]


def find_taesd_decoder(folder: Path, *, is_sdxl: bool) -> Path | None:
    """The user's TAESD decoder for this architecture in `folder` (models/VAE-approx), if any."""
    stem = taesd_decoder_stem(is_sdxl)
    for extension in TAESD_EXTENSIONS:
        candidate = Path(folder) / f"{stem}{extension}"
        if candidate.is_file():
            return candidate
    return None


def load_taesd_decoder(path: Path, *, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32) -> TAESDDecoder:
    """Build the decoder from its file (latent channels and width read from the shapes) and load
    it strictly: a missing, unexpected or mis-shaped key raises."""
    state_dict = read_state_dict(path)
    first_conv = state_dict.get("1.weight")
    if first_conv is None or first_conv.ndim != 4:
        raise ValueError(f"{Path(path).name} is not a TAESD decoder (no '1.weight' conv)")
    width, latent_channels = int(first_conv.shape[0]), int(first_conv.shape[1])
    decoder = TAESDDecoder(latent_channels=latent_channels, width=width)
    decoder.load_state_dict(state_dict, strict=True)
    return decoder.to(device=device, dtype=dtype).eval()
