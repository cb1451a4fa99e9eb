"""Seeds and noise with A1111 semantics (a1111-compat.md §11.2)."""
from __future__ import annotations

import pytest
import torch

from modules.engine.philox import PhiloxGenerator
from modules.engine.noise import SEED_RANGE, ImageRNG, resolve_seed, slerp

SHAPE = (4, 8, 8)


def cpu_randn(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))


def test_cpu_noise_is_torch_cpu_randn_of_the_seed():
    noise = ImageRNG(SHAPE, [123456]).first()
    assert noise.shape == (1, *SHAPE) and noise.dtype == torch.float32
    assert torch.equal(noise[0], cpu_randn(123456, SHAPE))


def test_batch_noise_equals_single_images_with_consecutive_seeds():
    batch = ImageRNG(SHAPE, [1000, 1001]).first()
    assert torch.equal(batch[0], ImageRNG(SHAPE, [1000]).first()[0])
    assert torch.equal(batch[1], ImageRNG(SHAPE, [1001]).first()[0])
    assert not torch.equal(batch[0], batch[1])


def test_next_continues_each_images_own_generator():
    rng = ImageRNG(SHAPE, [5, 6])
    rng.first()
    extra = rng.next()
    for index, seed in enumerate([5, 6]):
        generator = torch.Generator("cpu").manual_seed(seed)
        torch.randn(SHAPE, generator=generator)
        assert torch.equal(extra[index], torch.randn(SHAPE, generator=generator))
    # first() restarts the streams: the same initial noise again
    assert torch.equal(rng.first(), ImageRNG(SHAPE, [5, 6]).first())


def test_reseed_applies_eta_noise_seed_delta():
    rng = ImageRNG(SHAPE, [10, 20])
    rng.first()
    rng.reseed(31337)
    assert torch.equal(rng.next()[1], cpu_randn(20 + 31337, SHAPE))


def test_variation_strength_zero_is_base_and_one_is_subseed():
    base = ImageRNG(SHAPE, [42]).first()
    at_zero = ImageRNG(SHAPE, [42], subseeds=[7], subseed_strength=0.0).first()
    at_one = ImageRNG(SHAPE, [42], subseeds=[7], subseed_strength=1.0).first()
    halfway = ImageRNG(SHAPE, [42], subseeds=[7], subseed_strength=0.5).first()
    assert torch.equal(at_zero, base)
    assert torch.allclose(at_one[0], cpu_randn(7, SHAPE), atol=1e-5)
    assert not torch.allclose(halfway, base, atol=0.1) and not torch.allclose(halfway[0], at_one[0], atol=0.1)
    # slerp keeps the noise at unit scale where a plain average would shrink it to ~0.71
    assert 0.85 < float(halfway.std()) < 1.15


def test_slerp_endpoints():
    low, high = cpu_randn(1, SHAPE), cpu_randn(2, SHAPE)
    assert torch.allclose(slerp(0.0, low, high), low, atol=1e-6)
    assert torch.allclose(slerp(1.0, low, high), high, atol=1e-5)


def test_seed_resize_from_smaller_size_pastes_the_small_noise_in_the_centre():
    # 48x48 pixels -> a 6x6 latent noise pasted into the 8x8 latent
    noise = ImageRNG(SHAPE, [99], seed_resize_from_h=48, seed_resize_from_w=48).first()[0]
    small = cpu_randn(99, (4, 6, 6))
    assert torch.equal(noise[:, 1:7, 1:7], small)
    # the border comes from the image's own full-size stream
    assert torch.equal(noise[:, 0, :], cpu_randn(99, SHAPE)[:, 0, :])


def test_seed_resize_from_larger_size_keeps_its_centre():
    noise = ImageRNG(SHAPE, [99], seed_resize_from_h=96, seed_resize_from_w=80).first()[0]
    large = cpu_randn(99, (4, 12, 10))
    assert torch.equal(noise, large[:, 2:10, 1:9])


def test_seed_resize_with_variation_blends_at_the_from_size():
    noise = ImageRNG(SHAPE, [3], subseeds=[4], subseed_strength=1.0,
                     seed_resize_from_h=48, seed_resize_from_w=48).first()[0]
    assert torch.allclose(noise[:, 1:7, 1:7], cpu_randn(4, (4, 6, 6)), atol=1e-5)


def test_gpu_source_on_cpu_device_equals_cpu_source():
    assert torch.equal(ImageRNG(SHAPE, [8], source="GPU").first(), ImageRNG(SHAPE, [8], source="CPU").first())


# torch.manual_seed(0); torch.randn(12, device="cuda") on NVIDIA GPUs (public, widely reproduced)
CUDA_SEED_0 = [-0.92466259, -0.42534414, -2.64384580, 0.14518388, -0.12086648, -0.57972562,
               -0.62285119, -0.32838708, -1.07454228, -0.36314407, -1.67105067, 2.26550508]


def test_nv_source_reproduces_cuda_randn():
    assert torch.allclose(PhiloxGenerator(0).randn((12,)), torch.tensor(CUDA_SEED_0), atol=1e-6)
    noise = ImageRNG((3, 2, 2), [0], source="NV").first()
    assert torch.allclose(noise.flatten(), torch.tensor(CUDA_SEED_0), atol=1e-6)


def test_nv_source_streams_and_batches_like_the_others():
    rng = ImageRNG(SHAPE, [5, 6], source="NV")
    first, following = rng.first(), rng.next()
    single = ImageRNG(SHAPE, [6], source="NV")
    assert torch.equal(first[1], single.first()[0])
    assert torch.equal(following[1], single.next()[0])
    assert not torch.equal(first[0], following[0])


def test_unknown_source_fails_clearly():
    with pytest.raises(ValueError, match="unknown RNG source"):
        ImageRNG(SHAPE, [1], source="TPU")


@pytest.mark.parametrize("value", [-1, None, "", "not a number", "-1"])
def test_resolve_seed_randomises_placeholders(value):
    seeds = {resolve_seed(value) for _ in range(5)}
    assert all(0 <= s < SEED_RANGE for s in seeds)
    assert len(seeds) > 1


@pytest.mark.parametrize("value, expected", [(1234, 1234), ("42", 42), (7.0, 7), (0, 0)])
def test_resolve_seed_keeps_fixed_seeds(value, expected):
    assert resolve_seed(value) == expected
