"""The denoise loop and the CFG denoiser on an analytic toy model.

The toy "UNet" knows the exact answer: data is Gaussian N(mu, spread^2) per pixel, where mu is the
mean of the cross-attention features it is given. So the ideal x0 estimate at noise level sigma is
mu + spread^2 / (spread^2 + sigma^2) * (x - mu), and an ODE sampler started from x_T = noise * sigma_T
must end at mu + (x_T - mu) * spread / sqrt(spread^2 + sigma_T^2).
"""
from __future__ import annotations

import math

import pytest
import torch
from k_diffusion.external import DiscreteSchedule

from modules.engine.cond_types import BatchConditioning, ComposableCond, Cond, ImageCond, ScheduledCond
from modules.engine.denoiser import CFGDenoiser, DiscreteDenoiser
from modules.engine.noise import ImageRNG
from modules.engine.samplers import SAMPLERS
from modules.engine.sampling import SamplingInterrupted, sample

SHAPE = (4, 8, 8)


class ToyModel:
    """apply_model with the StableDiffusionModel interface; records every call."""

    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, spread: float = 0.5, prediction: str = "eps") -> None:
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
        self.alphas_cumprod = torch.cumprod(1 - betas, 0).float()
        self.table = DiscreteSchedule(((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5, False)
        self.spread = spread
        self.prediction = prediction
        self.calls: list[dict] = []

    def apply_model(self, x_in, t, crossattn, vector=None, concat=None):
        sigma = self.table.t_to_sigma(t).view(-1, 1, 1, 1)
        x = x_in * (sigma ** 2 + 1) ** 0.5
        mu = crossattn.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        if vector is not None:
            mu = mu + vector.mean(dim=1).view(-1, 1, 1, 1)
        if concat is not None:
            mu = mu + concat.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)
        self.calls.append({"rows": x_in.shape[0], "mu": mu.flatten().tolist(), "tokens": crossattn.shape[1]})
        variance = self.spread ** 2
        denoised = mu + variance / (variance + sigma ** 2) * (x - mu)
        if self.prediction == "eps":
            return (x - denoised) / sigma
        c_skip, c_out = 1 / (sigma ** 2 + 1), -sigma / (sigma ** 2 + 1) ** 0.5
        return (denoised - x * c_skip) / c_out


def cond(value: float, tokens: int = 77) -> Cond:
    return Cond(torch.full((tokens, 8), float(value)))


def fixed(value: float, tokens: int = 77) -> ScheduledCond:
    return ScheduledCond([(1000, cond(value, tokens))])


def conditioning(values: list[float], uncond: float | list[float] = 0.0) -> BatchConditioning:
    unconds = uncond if isinstance(uncond, list) else [uncond] * len(values)
    return BatchConditioning([ComposableCond([(fixed(v), 1.0)]) for v in values], [fixed(u) for u in unconds])


def run(model, values, seeds, uncond=0.0, **kwargs):
    kwargs.setdefault("scheduler", "Automatic")
    kwargs.setdefault("steps", 20)
    # DDIM CFG++ guides with cfg_scale / 12.5, so 12.5 is its "cond only" setting
    kwargs.setdefault("cfg_scale", 12.5 if kwargs["sampler_name"] == "DDIM CFG++" else 1.0)
    return sample(model, conditioning(values, uncond), ImageRNG(SHAPE, seeds), **kwargs)


@pytest.mark.parametrize("scheduler", ["Automatic", "Karras"])
@pytest.mark.parametrize("sampler", [s.name for s in SAMPLERS])
def test_every_sampler_converges_and_is_deterministic(sampler, scheduler):
    # CFG++ re-noises with the uncond prediction, which on this toy pushes away from the uncond mean
    # (see test_ddim_cfgpp_renoises_with_the_uncond_prediction); converge it with uncond == cond
    uncond = [1.0, -2.0] if sampler == "DDIM CFG++" else 0.0
    model = ToyModel()
    first = run(model, [1.0, -2.0], [11, 12], uncond, sampler_name=sampler, scheduler=scheduler)
    again = run(model, [1.0, -2.0], [11, 12], uncond, sampler_name=sampler, scheduler=scheduler)
    latent = first.latent
    assert latent.shape == (2, *SHAPE) and torch.isfinite(latent).all()
    for index, mu in enumerate([1.0, -2.0]):
        assert float(latent[index].mean()) == pytest.approx(mu, abs=0.2), sampler
        assert 0.25 < float(latent[index].std()) < 0.75, sampler   # data spread is 0.5
    assert torch.equal(latent, again.latent)


@pytest.mark.parametrize("sampler, scheduler, tolerance", [
    ("DPM++ 2M", "Automatic", 0.05), ("LMS", "Karras", 0.05), ("Heun", "Karras", 0.05),
    ("DPM2", "Automatic", 0.05), ("PLMS", "Karras", 0.05), ("UniPC", "Karras", 0.05),
    ("UniPC", "Automatic", 0.15), ("Euler", "Karras", 0.25), ("DDIM", "Karras", 0.25),
    ("DDIM", "Automatic", 0.25),
])
def test_deterministic_samplers_follow_the_exact_ode_solution(sampler, scheduler, tolerance):
    spread = 0.5
    sigmas = DiscreteDenoiser(ToyModel()).sigmas
    # DDIM's own grid starts at timestep 951 (20 steps); every other schedule at the top sigma
    sigma_top = float(sigmas[951] if (sampler, scheduler) == ("DDIM", "Automatic") else sigmas[-1])
    noise = ImageRNG(SHAPE, [11, 12]).first()
    # the DDIM family starts from pure VP noise: x_T = noise * sqrt(1 + sigma^2) in sigma space
    timestep_family = sampler in ("DDIM", "PLMS", "UniPC")
    start = noise * ((1 + sigma_top ** 2) ** 0.5 if timestep_family else sigma_top)
    mu = torch.tensor([1.0, -2.0]).view(-1, 1, 1, 1)
    expected = mu + (start - mu) * spread / math.sqrt(spread ** 2 + sigma_top ** 2)
    result = run(ToyModel(spread), [1.0, -2.0], [11, 12], sampler_name=sampler, scheduler=scheduler)
    assert float((result.latent - expected).abs().max()) < tolerance


def test_ddim_cfgpp_renoises_with_the_uncond_prediction():
    ddim = run(ToyModel(), [1.0], [4], sampler_name="DDIM", uncond=1.0)
    cfgpp_same_uncond = run(ToyModel(), [1.0], [4], sampler_name="DDIM CFG++", uncond=1.0)
    cfgpp = run(ToyModel(), [1.0], [4], sampler_name="DDIM CFG++", uncond=0.0)
    ddim_guided = run(ToyModel(), [1.0], [4], sampler_name="DDIM", uncond=0.0)
    # with uncond == cond both are plain DDIM; otherwise CFG++ moves away from the uncond further
    assert torch.allclose(ddim.latent, cfgpp_same_uncond.latent, atol=1e-4)
    assert float(cfgpp.latent.mean()) > float(ddim_guided.latent.mean()) + 0.5


def test_v_prediction_gives_the_same_result_as_eps():
    eps = run(ToyModel(prediction="eps"), [1.0], [5], sampler_name="DPM++ 2M")
    v = run(ToyModel(prediction="v"), [1.0], [5], sampler_name="DPM++ 2M")
    assert torch.allclose(eps.latent, v.latent, atol=1e-4)


def test_batch_results_do_not_depend_on_batch_size():
    for sampler in ("Euler a", "DPM++ 2M SDE", "DDIM"):
        batch = run(ToyModel(), [1.0, 1.0], [300, 301], sampler_name=sampler, eta=0.5).latent
        single = run(ToyModel(), [1.0], [301], sampler_name=sampler, eta=0.5).latent
        assert torch.allclose(batch[1], single[0], atol=1e-5), sampler


def test_cfg_combines_and_parts_with_weights_in_one_batched_call():
    model = ToyModel(spread=0.0)   # a point mass: the model's x0 estimate is exactly mu
    image0 = ComposableCond([(fixed(1.0), 0.5), (fixed(3.0, tokens=154), 0.25)])
    image1 = ComposableCond([(fixed(-1.0), 1.0)])
    batch = BatchConditioning([image0, image1], [fixed(0.5), fixed(0.0, tokens=154)])
    denoiser = CFGDenoiser(DiscreteDenoiser(model), batch, cfg_scale=7.0)
    x = torch.randn(2, *SHAPE)
    denoised = denoiser(x, torch.tensor([3.0, 3.0]))
    assert len(model.calls) == 1
    assert model.calls[0]["rows"] == 5 and model.calls[0]["tokens"] == 154
    # padding by repeating the last token keeps each cond's features (mean) unchanged
    assert model.calls[0]["mu"] == pytest.approx([1.0, 3.0, -1.0, 0.5, 0.0])
    expected0 = 0.5 + 7.0 * (0.5 * (1.0 - 0.5) + 0.25 * (3.0 - 0.5))
    expected1 = 0.0 + 7.0 * (-1.0 - 0.0)
    assert torch.allclose(denoised[0], torch.full(SHAPE, expected0), atol=1e-4)
    assert torch.allclose(denoised[1], torch.full(SHAPE, expected1), atol=1e-4)
    assert denoiser.step == 1


def test_vector_and_image_concat_reach_every_row():
    model = ToyModel(spread=0.0)
    batch = BatchConditioning(
        [ComposableCond([(ScheduledCond([(100, Cond(torch.zeros(77, 8), torch.full((6,), 2.0)))]), 1.0)])],
        [ScheduledCond([(100, Cond(torch.zeros(77, 8), torch.full((6,), 1.0)))])],
        ImageCond(concat=torch.full((1, 5, 8, 8), 0.25)))
    denoised = CFGDenoiser(DiscreteDenoiser(model), batch, cfg_scale=2.0)(torch.zeros(1, *SHAPE), torch.tensor([1.0]))
    assert model.calls[0]["mu"] == pytest.approx([2.25, 1.25])
    assert torch.allclose(denoised, torch.full((1, *SHAPE), 1.25 + 2.0 * (2.25 - 1.25)), atol=1e-4)


def test_prompt_editing_switches_cond_after_its_end_step():
    model = ToyModel()
    edited = ScheduledCond([(3, cond(1.0)), (1000, cond(2.0))])
    batch = BatchConditioning([ComposableCond([(edited, 1.0)])], [fixed(0.0)])
    sample(model, batch, ImageRNG(SHAPE, [1]), sampler_name="Euler", scheduler="Automatic", steps=8, cfg_scale=1.0)
    assert [call["mu"][0] for call in model.calls] == [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]


def test_second_order_samplers_count_every_model_call_as_a_step():
    model = ToyModel()
    edited = ScheduledCond([(3, cond(1.0)), (1000, cond(2.0))])
    batch = BatchConditioning([ComposableCond([(edited, 1.0)])], [fixed(0.0)])
    sample(model, batch, ImageRNG(SHAPE, [1]), sampler_name="Heun", scheduler="Automatic", steps=4, cfg_scale=1.0)
    assert [call["mu"][0] for call in model.calls] == [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0]


def test_s_min_uncond_skips_the_uncond_pass_on_odd_low_sigma_steps():
    model = ToyModel()
    result = run(model, [1.0], [3], sampler_name="Euler", steps=10, s_min_uncond=100.0,
                 cfg_scale=7.0)
    assert [call["rows"] for call in model.calls] == [2, 1] * 5
    assert result.extra_generation_params["NGMS"] == 100.0


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M", "Heun"])
def test_cfg_1_runs_the_cond_pass_only_and_gives_the_same_image(sampler):
    """Few-step models sample at CFG 1: the uncond pass cannot change the result, so it is
    not run; each step is one UNet row per image (and the image is what CFG 1 gives)."""
    model = ToyModel()
    result = run(model, [1.0, 2.0], [3, 4], sampler_name=sampler, steps=4)
    assert {call["rows"] for call in model.calls} == {2}
    assert sorted({round(m, 6) for call in model.calls for m in call["mu"]}) == [1.0, 2.0]
    # a scale a hair above 1 runs both passes: the same image, to rounding
    with_uncond = run(ToyModel(), [1.0, 2.0], [3, 4], sampler_name=sampler, steps=4,
                      cfg_scale=1.0 + 1e-9)
    assert torch.allclose(result.latent, with_uncond.latent, atol=1e-5)
    guided = ToyModel()
    run(guided, [1.0, 2.0], [3, 4], sampler_name=sampler, steps=4, cfg_scale=1.5)
    assert {call["rows"] for call in guided.calls} == {4}
    # AND-ed prompts still need the uncond at CFG 1: each part is measured from it
    both = ToyModel()
    batch = BatchConditioning([ComposableCond([(fixed(1.0), 1.0), (fixed(2.0), 0.5)])],
                              [fixed(0.0)])
    sample(both, batch, ImageRNG(SHAPE, [1]), sampler_name=sampler, scheduler="Automatic",
           steps=2, cfg_scale=1.0)
    assert {call["rows"] for call in both.calls} == {3}


def test_callback_reports_every_step_and_interrupt_returns_the_latest_estimate():
    seen = []
    run(ToyModel(), [1.0], [3], sampler_name="Euler", steps=6, callback=lambda i, n, x: seen.append((i, n)))
    assert seen == [(i, 6) for i in range(6)]

    estimates = []

    def stop_at_step_two(step, total, latent):
        estimates.append(latent.clone())
        if step == 2:
            raise SamplingInterrupted()

    model = ToyModel()
    result = run(model, [1.0], [3], sampler_name="DPM++ 2M", steps=20, callback=stop_at_step_two)
    assert len(model.calls) == 3
    assert torch.equal(result.latent, estimates[-1])
    assert float(result.latent.mean()) == pytest.approx(1.0, abs=0.3)


def test_img2img_runs_the_last_t_enc_plus_one_steps_from_the_init_latent():
    init = torch.full((1, *SHAPE), 3.0)
    model = ToyModel(spread=2.0)
    result = run(model, [3.0], [9], sampler_name="Euler", steps=10, init_latent=init, denoising_strength=0.3)
    assert len(model.calls) == 4   # t_enc = int(0.3 * 10) = 3 -> 4 steps
    low = run(ToyModel(spread=2.0), [3.0], [9], sampler_name="Euler", steps=10, init_latent=init,
              denoising_strength=0.05)
    high = run(ToyModel(spread=2.0), [3.0], [9], sampler_name="Euler", steps=10, init_latent=init,
               denoising_strength=1.0)
    change = [float((r.latent - init).abs().mean()) for r in (low, result, high)]
    assert change[0] < change[1] < change[2]
    assert change[0] < 0.05


def test_img2img_inpaint_mask_keeps_the_unmasked_latent():
    init = torch.full((1, *SHAPE), 3.0)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1.0
    result = run(ToyModel(), [-1.0], [9], sampler_name="Euler a", steps=10, init_latent=init,
                 denoising_strength=1.0, inpaint_mask=mask)
    assert torch.equal(result.latent[..., 4:], init[..., 4:])
    assert float(result.latent[..., :4].mean()) == pytest.approx(-1.0, abs=0.3)


def test_extra_generation_params_for_non_default_settings():
    assert run(ToyModel(), [1.0], [1], sampler_name="Euler a", steps=4).extra_generation_params == {}
    assert run(ToyModel(), [1.0], [1], sampler_name="Euler a", steps=4, eta=0.5).extra_generation_params == {"Eta": 0.5}
    assert run(ToyModel(), [1.0], [1], sampler_name="DDIM", steps=4, eta=0.3).extra_generation_params == {"Eta DDIM": 0.3}
    assert run(ToyModel(), [1.0], [1], sampler_name="DDIM", steps=4, eta_ddim_default=0.2,
               ).extra_generation_params == {"Eta DDIM": 0.2}
    churn = run(ToyModel(), [1.0], [1], sampler_name="Euler", steps=4, s_churn=1.0, s_noise=1.01)
    assert churn.extra_generation_params == {"Sigma churn": 1.0, "Sigma noise": 1.01}
    assert run(ToyModel(), [1.0], [1], sampler_name="LMS", steps=4, s_churn=1.0).extra_generation_params == {}
    overridden = run(ToyModel(), [1.0], [1], sampler_name="Euler", scheduler="Karras", steps=4, sigma_max=10.0)
    assert overridden.extra_generation_params == {"Schedule max sigma": 10.0}


def test_eta_noise_seed_delta_changes_ancestral_noise_and_is_reported():
    plain = run(ToyModel(), [1.0], [1], sampler_name="Euler a", steps=6)
    delta = run(ToyModel(), [1.0], [1], sampler_name="Euler a", steps=6, eta_noise_seed_delta=31337)
    assert delta.extra_generation_params == {"ENSD": 31337}
    assert not torch.allclose(plain.latent, delta.latent)
    euler = run(ToyModel(), [1.0], [1], sampler_name="Euler", steps=6, eta_noise_seed_delta=31337)
    assert euler.extra_generation_params == {}


def test_unknown_sampler_is_an_error():
    with pytest.raises(ValueError, match="unknown sampler"):
        run(ToyModel(), [1.0], [1], sampler_name="Nope")


# single-step samplers only: a multistep one (DPM++ 2M, LMS, …) restarts its history at the split
@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ SDE", "Heun"])
def test_a_run_split_with_stop_at_and_resume_from_equals_the_whole_run(sampler):
    """The refiner's mechanism: stop before step k, continue from x there (same model here);
    ancestral noise streams and Brownian trees continue across the split."""
    model = ToyModel()
    whole = run(model, [1.0], [21], sampler_name=sampler, steps=12)
    first = run(model, [1.0], [21], sampler_name=sampler, steps=12,
                stop_at=lambda step, total, timestep: step == 5)
    assert first.stopped_at == 5
    assert first.denoiser_calls > 0
    rng = ImageRNG(SHAPE, [21])
    first = sample(model, conditioning([1.0]), rng, sampler_name=sampler, scheduler="Automatic",
                   steps=12, cfg_scale=1.0, stop_at=lambda step, total, timestep: step == 5)
    rest = sample(model, conditioning([1.0]), rng, sampler_name=sampler, scheduler="Automatic",
                  steps=12, cfg_scale=1.0, resume_from=(first.stopped_at, first.latent))
    assert rest.stopped_at is None
    assert torch.allclose(rest.latent, whole.latent, atol=1e-5), \
        (rest.latent - whole.latent).abs().max()


def test_stop_rule_sees_model_timesteps_from_high_to_low():
    seen = []
    run(ToyModel(), [1.0], [3], sampler_name="Euler", steps=6,
        stop_at=lambda step, total, timestep: seen.append((step, total, timestep)) and False)
    assert [s for s, _, _ in seen] == list(range(6)) and {t for _, t, _ in seen} == {6}
    timesteps = [t for _, _, t in seen]
    assert timesteps == sorted(timesteps, reverse=True) and timesteps[0] > 990
