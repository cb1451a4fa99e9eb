"""Sampler / scheduler tables, A1111 name resolution and the sigma schedules."""
from __future__ import annotations

import types

import pytest
import torch

from modules.engine import schedules
from modules.engine.denoiser import DiscreteDenoiser
from modules.engine.samplers import (SAMPLERS, effective_scheduler, find_sampler, get_sampler_and_scheduler,
                                     samplers_api_list)
from modules.engine.sampling import compute_sigmas

EXPECTED_SAMPLERS = [
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a",
    "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM", "DDIM CFG++",
    "PLMS", "UniPC", "LCM",
]
EXPECTED_SCHEDULERS = [
    ("automatic", "Automatic"), ("uniform", "Uniform"), ("karras", "Karras"), ("exponential", "Exponential"),
    ("polyexponential", "Polyexponential"), ("sgm_uniform", "SGM Uniform"), ("kl_optimal", "KL Optimal"),
    ("align_your_steps", "Align Your Steps"), ("simple", "Simple"), ("normal", "Normal"), ("ddim", "DDIM"),
    ("beta", "Beta"),
]


def sd_denoiser() -> DiscreteDenoiser:
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    model = types.SimpleNamespace(alphas_cumprod=torch.cumprod(1 - betas, 0).float(), prediction="eps",
                                  device=torch.device("cpu"))
    return DiscreteDenoiser(model)


def test_sampler_table_order_and_api_shape():
    assert [s.name for s in SAMPLERS] == EXPECTED_SAMPLERS
    listing = samplers_api_list()
    assert listing[0] == {"name": "DPM++ 2M", "aliases": ["k_dpmpp_2m"], "options": {"scheduler": "karras"}}
    assert listing[1]["options"] == {"scheduler": "karras", "second_order": "True", "brownian_noise": "True"}
    assert listing[3]["options"]["solver_type"] == "heun"
    assert listing[6] == {"name": "Euler a", "aliases": ["k_euler_a", "k_euler_ancestral"],
                          "options": {"uses_ensd": "True"}}
    assert listing[15] == {"name": "DDIM", "aliases": ["ddim"], "options": {}}
    assert all(isinstance(v, str) for item in listing for v in item["options"].values())


def test_scheduler_table_and_api_shape():
    listing = schedules.schedulers_api_list()
    assert [(s["name"], s["label"]) for s in listing] == EXPECTED_SCHEDULERS
    assert listing[0] == {"name": "automatic", "label": "Automatic", "aliases": None, "default_rho": -1.0,
                          "need_inner_model": False}
    assert listing[2]["default_rho"] == 7.0 and listing[4]["default_rho"] == 1.0
    assert listing[5]["aliases"] == ["SGMUniform"] and listing[5]["need_inner_model"] is True
    assert isinstance(listing[0]["default_rho"], float)


@pytest.mark.parametrize("name, scheduler, expected", [
    ("DPM++ 2M Karras", None, ("DPM++ 2M", "Automatic")),
    ("Euler a Karras", None, ("Euler a", "Karras")),
    ("k_euler_a", None, ("DPM++ 2M", "Automatic")),
    ("no such sampler", "Karras", ("DPM++ 2M", "Automatic")),
    ("no such sampler", "Exponential", ("DPM++ 2M", "Exponential")),
    (None, None, ("DPM++ 2M", "Automatic")),
    ("Euler", "karras", ("Euler", "Karras")),
    ("Euler", "Karras", ("Euler", "Karras")),
    ("Euler", "SGMUniform", ("Euler", "SGM Uniform")),
    ("Euler", "unknown schedule", ("Euler", "Automatic")),
    ("DPM++ 2M SDE Exponential", None, ("DPM++ 2M SDE", "Automatic")),
    ("DPM++ 2M SDE Karras", None, ("DPM++ 2M SDE", "Karras")),
    ("LMS Karras", "Exponential", ("LMS", "Karras")),
])
def test_get_sampler_and_scheduler_examples(name, scheduler, expected):
    assert get_sampler_and_scheduler(name, scheduler) == expected


def test_convert_automatic_false_keeps_the_default_label():
    assert get_sampler_and_scheduler("DPM++ 2M Karras", None, convert_automatic=False) == ("DPM++ 2M", "Karras")


def test_find_sampler_accepts_aliases_case_insensitively():
    assert find_sampler("k_euler_ancestral").name == "Euler a"
    assert find_sampler("euler A").name == "Euler a"
    assert find_sampler("ddim_cfgpp").name == "DDIM CFG++"
    assert find_sampler("nope") is None and find_sampler(None) is None


def test_effective_scheduler_uses_sampler_default_for_automatic():
    assert effective_scheduler(find_sampler("DPM++ 2M"), "Automatic").name == "karras"
    assert effective_scheduler(find_sampler("DPM++ 3M SDE"), None).name == "exponential"
    assert effective_scheduler(find_sampler("Euler"), "Automatic").name == "automatic"
    assert effective_scheduler(find_sampler("Euler"), "Beta").name == "beta"


@pytest.mark.parametrize("steps", [7, 20])
@pytest.mark.parametrize("scheduler", [s for s in schedules.SCHEDULERS if s.function is not None],
                         ids=lambda s: s.name)
def test_every_schedule_is_decreasing_and_ends_in_zero(scheduler, steps):
    denoiser = sd_denoiser()
    inputs = schedules.ScheduleInputs(discrete=denoiser.schedule)
    sigmas = scheduler.function(steps, denoiser.sigma_min, denoiser.sigma_max, inputs)
    assert sigmas.shape == (steps + 1,)
    assert sigmas[-1] == 0
    assert torch.all(sigmas[:-1] > sigmas[1:]), sigmas
    assert float(sigmas[0]) <= denoiser.sigma_max * 1.0001
    if scheduler.name != "ddim":   # DDIM's stride grid starts below the top (timestep 951 for 20 steps)
        assert float(sigmas[0]) == pytest.approx(denoiser.sigma_max, rel=0.01)


def test_model_sigma_range_is_sd_like():
    denoiser = sd_denoiser()
    assert denoiser.sigma_min == pytest.approx(0.0292, abs=1e-3)
    assert denoiser.sigma_max == pytest.approx(14.6146, abs=1e-3)


def test_karras_reaches_both_ends_and_respects_rho():
    sigmas7 = schedules.karras_sigmas(10, 0.03, 14.6, schedules.ScheduleInputs())
    sigmas3 = schedules.karras_sigmas(10, 0.03, 14.6, schedules.ScheduleInputs(rho=3.0))
    assert float(sigmas7[0]) == pytest.approx(14.6) and float(sigmas7[-2]) == pytest.approx(0.03)
    assert float(sigmas3[5]) > float(sigmas7[5])   # lower rho spends less time at low sigma


def test_align_your_steps_tables_and_interpolation():
    sd15 = schedules.align_your_steps_sigmas(10, 0.03, 14.6, schedules.ScheduleInputs(is_sdxl=False))
    sdxl = schedules.align_your_steps_sigmas(10, 0.03, 14.6, schedules.ScheduleInputs(is_sdxl=True))
    assert float(sd15[0]) == pytest.approx(14.615) and float(sd15[-2]) == pytest.approx(0.029)
    assert not torch.allclose(sd15, sdxl)
    exact = schedules.align_your_steps_sigmas(11, 0.03, 14.6, schedules.ScheduleInputs())
    assert torch.allclose(exact[:-1], torch.tensor(schedules.AYS_SIGMAS_SD15))
    doubled = schedules.align_your_steps_sigmas(21, 0.03, 14.6, schedules.ScheduleInputs())
    # log-linear interpolation: every other point is an original table entry
    assert torch.allclose(doubled[:-1:2], torch.tensor(schedules.AYS_SIGMAS_SD15), rtol=1e-5)
    assert float(doubled[1]) == pytest.approx((14.615 * 6.475) ** 0.5, rel=1e-4)


def test_beta_schedule_follows_its_parameters():
    inputs = schedules.ScheduleInputs(beta_alpha=0.6, beta_beta=0.6)
    other = schedules.ScheduleInputs(beta_alpha=2.0, beta_beta=2.0)
    assert not torch.allclose(schedules.beta_sigmas(10, 0.03, 14.6, inputs),
                              schedules.beta_sigmas(10, 0.03, 14.6, other))
    assert float(schedules.beta_sigmas(10, 0.03, 14.6, inputs)[-2]) == pytest.approx(0.03)


def test_compute_sigmas_discards_penultimate_and_reports_overrides():
    denoiser = sd_denoiser()
    dpm2, params = compute_sigmas(denoiser, find_sampler("DPM2"), "Automatic", 10)
    karras_11 = schedules.karras_sigmas(11, denoiser.sigma_min, denoiser.sigma_max, schedules.ScheduleInputs())
    assert dpm2.shape == (11,) and params == {}
    assert torch.allclose(dpm2, torch.cat([karras_11[:-2], karras_11[-1:]]))

    sigmas, params = compute_sigmas(denoiser, find_sampler("Euler"), "Karras", 10,
                                    sigma_max=10.0, sigma_min=0.1, rho=5.0)
    assert params == {"Schedule min sigma": 0.1, "Schedule max sigma": 10.0, "Schedule rho": 5.0}
    assert float(sigmas[0]) == pytest.approx(10.0) and float(sigmas[-2]) == pytest.approx(0.1)

    _, params = compute_sigmas(denoiser, find_sampler("Euler"), "Beta", 10)
    assert params == {"Beta schedule alpha": 0.6, "Beta schedule beta": 0.6}
    _, params = compute_sigmas(denoiser, find_sampler("Euler"), "Karras", 10, rho=7.0)
    assert params == {}   # rho equal to the scheduler default is not an override
    _, params = compute_sigmas(denoiser, find_sampler("Euler"), "Karras", 10, always_discard_next_to_last_sigma=True)
    assert params == {"Discard penultimate sigma": True}


def test_automatic_schedules_for_model_and_timestep_samplers():
    denoiser = sd_denoiser()
    euler, _ = compute_sigmas(denoiser, find_sampler("Euler"), "Automatic", 20)
    assert torch.allclose(euler, denoiser.get_sigmas(20))
    ddim, _ = compute_sigmas(denoiser, find_sampler("DDIM"), "Automatic", 20)
    # A1111 DDIM timesteps 951, 901, …, 1
    assert ddim.shape == (21,) and ddim[-1] == 0
    assert float(ddim[0]) == pytest.approx(float(denoiser.sigmas[951]), rel=1e-5)
    assert float(ddim[-2]) == pytest.approx(float(denoiser.sigmas[1]), rel=1e-5)
    unipc, _ = compute_sigmas(denoiser, find_sampler("UniPC"), "Automatic", 20)
    assert unipc.shape == (21,) and float(unipc[-1]) == pytest.approx(denoiser.sigma_min, rel=1e-4)
