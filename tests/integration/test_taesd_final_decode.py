"""`sd_vae_decode_method` = TAESD: the final image comes from the tiny autoencoder in
models/VAE-approx and the infotext says so; without its file the full VAE decodes and the answer
says which file is missing."""
from __future__ import annotations

import numpy as np

from modules.processing.previews import vae_approx_dir
from tests.engine.test_taesd import write_tiny_taesd
from tests.integration.conftest import generate


def test_the_final_image_comes_from_taesd_when_set(app_ctx):
    path = write_tiny_taesd(vae_approx_dir(app_ctx.paths) / "taesd_decoder.safetensors",
                            output_bias=(0.0, 1.0, 0.0))          # decodes to pure green
    try:
        with app_ctx.options.override({"sd_vae_decode_method": "TAESD"}):
            processed = generate(app_ctx, "tiny-sd1", prompt="a cat", seed=4, batch_size=2)
    finally:
        path.unlink()
    for image in processed.images[processed.index_of_first_image:]:
        assert image.size == (64, 64)
        assert np.array_equal(np.unique(np.asarray(image).reshape(-1, 3), axis=0),
                              [[0, 255, 0]])
    assert "VAE Decoder: TAESD" in processed.infotexts[0]
    plain = generate(app_ctx, "tiny-sd1", prompt="a cat", seed=4)
    assert "VAE Decoder" not in plain.infotexts[0]
    assert len(np.unique(np.asarray(plain.images[0]).reshape(-1, 3), axis=0)) > 100


def test_without_the_decoder_file_the_full_vae_decodes_and_says_so(app_ctx):
    plain = generate(app_ctx, "tiny-sdxl", prompt="a dog", seed=6)
    with app_ctx.options.override({"sd_vae_decode_method": "TAESD"}):
        processed = generate(app_ctx, "tiny-sdxl", prompt="a dog", seed=6)
    assert np.array_equal(np.asarray(processed.images[0]), np.asarray(plain.images[0]))
    assert "taesdxl_decoder.safetensors" in processed.comments
    assert "VAE Decoder" not in processed.infotexts[0]
