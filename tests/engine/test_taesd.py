"""TAESD decoder: the released files' key names load strictly; the network decodes 8x upscaled
images in [0, 1]; the file for the model's architecture is the one found."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.engine.taesd import TAESDDecoder, find_taesd_decoder, load_taesd_decoder

BLOCK_INDEXES = (3, 4, 5, 8, 9, 10, 13, 14, 15, 18)   # Sequential positions of the residual blocks
UPSAMPLE_CONV_INDEXES = (7, 12, 17)                    # bias-free convs after each 2x upsample


def released_decoder_shapes(width: int, latent_channels: int = 4) -> dict[str, tuple[int, ...]]:
    """Key → shape of a taesd_decoder / taesdxl_decoder file (written out independently of the
    module under test, from the published layout)."""
    shapes: dict[str, tuple[int, ...]] = {"1.weight": (width, latent_channels, 3, 3),
                                          "1.bias": (width,)}
    for index in BLOCK_INDEXES:
        for conv in (0, 2, 4):
            shapes[f"{index}.conv.{conv}.weight"] = (width, width, 3, 3)
            shapes[f"{index}.conv.{conv}.bias"] = (width,)
    for index in UPSAMPLE_CONV_INDEXES:
        shapes[f"{index}.weight"] = (width, width, 3, 3)
    shapes["19.weight"] = (3, width, 3, 3)
    shapes["19.bias"] = (3,)
    return shapes


def write_tiny_taesd(path: Path, *, width: int = 8, seed: int = 0,
                     output_bias: tuple[float, float, float] | None = None) -> Path:
    """Random tiny weights in the real key format (.safetensors or .pth by suffix). With
    `output_bias` every weight is zero, so the decoder outputs exactly that colour."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {key: torch.randn(shape, generator=generator) * 0.1
               for key, shape in released_decoder_shapes(width).items()}
    if output_bias is not None:
        tensors = {key: torch.zeros_like(value) for key, value in tensors.items()}
        tensors["19.bias"] = torch.tensor(output_bias)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file(tensors, str(path))
    else:
        torch.save(tensors, path)
    return path


def test_full_size_decoder_has_the_released_keys_and_size():
    with torch.device("meta"):
        decoder = TAESDDecoder()
    shapes = {key: tuple(value.shape) for key, value in decoder.state_dict().items()}
    assert shapes == released_decoder_shapes(64)
    # the published TAESD decoder has about 1.22 M parameters
    assert sum(p.numel() for p in decoder.parameters()) == 1_222_531


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_tiny_file_loads_strictly_and_decodes_8x(tmp_path, suffix):
    path = write_tiny_taesd(tmp_path / f"taesd_decoder{suffix}")
    decoder = load_taesd_decoder(path)
    assert decoder.latent_channels == 4 and decoder[1].weight.shape[0] == 8
    image = decoder.decode(torch.randn(2, 4, 5, 6) * 3)
    assert image.shape == (2, 3, 40, 48) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image.std() > 0                     # random weights give a non-constant picture


def test_decoder_output_is_the_last_conv_bias_when_weights_are_zero(tmp_path):
    path = write_tiny_taesd(tmp_path / "taesd_decoder.safetensors", output_bias=(0.25, 0.5, 2.0))
    image = load_taesd_decoder(path).decode(torch.randn(1, 4, 2, 2))
    # (0.25, 0.5) pass through; 2.0 is clamped to the image range
    assert torch.allclose(image[0, :, 5, 7], torch.tensor([0.25, 0.5, 1.0]))
    assert torch.equal(image.amin(dim=(2, 3)), image.amax(dim=(2, 3)))


def test_loading_is_strict(tmp_path):
    from safetensors.torch import load_file
    path = write_tiny_taesd(tmp_path / "taesd_decoder.safetensors")
    tensors = load_file(str(path))
    del tensors["18.conv.2.bias"]
    save_file(tensors, str(path))
    with pytest.raises(RuntimeError, match="18.conv.2.bias"):
        load_taesd_decoder(path)
    save_file({"decoder.weight": torch.zeros(3)}, str(path))
    with pytest.raises(ValueError, match="not a TAESD decoder"):
        load_taesd_decoder(path)


def test_finds_the_decoder_of_the_architecture(tmp_path):
    assert find_taesd_decoder(tmp_path, is_sdxl=False) is None
    sd = write_tiny_taesd(tmp_path / "taesd_decoder.pth")
    assert find_taesd_decoder(tmp_path, is_sdxl=False) == sd
    assert find_taesd_decoder(tmp_path, is_sdxl=True) is None
    sdxl = write_tiny_taesd(tmp_path / "taesdxl_decoder.safetensors")
    assert find_taesd_decoder(tmp_path, is_sdxl=True) == sdxl
    # safetensors is preferred over a pickle of the same model
    sd_safe = write_tiny_taesd(tmp_path / "taesd_decoder.safetensors")
    assert find_taesd_decoder(tmp_path, is_sdxl=False) == sd_safe
