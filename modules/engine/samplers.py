"""The sampler table (A1111 names, aliases and options, a1111-compat.md §7.1) and sampler/scheduler
name resolution (§7.3). The API listing and the UI dropdowns both come from `SAMPLERS`."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from k_diffusion import sampling as k_sampling

from modules.engine import schedules, timestep_samplers

CHURN_PARAMS = ("s_churn", "s_tmin", "s_tmax", "s_noise")
NOISE_PARAMS = ("s_noise",)


@dataclass(frozen=True)
class SamplerInfo:
    """One sampler.

    options: A1111's option dict (what the API lists): scheduler (default schedule), second_order,
    brownian_noise, uses_ensd, discard_next_to_last_sigma, solver_type.
    function: a sampler with k-diffusion's signature `(model, x, sigmas, extra_args, callback, disable, …)`.
    kind: "kdiffusion" (eta option eta_ancestral, infotext "Eta", default 1.0) or "timestep"
    (DDIM family: eta option eta_ddim, infotext "Eta DDIM", default 0.0; own automatic schedule).
    extra_params: which of s_churn / s_tmin / s_tmax / s_noise A1111 passes to this sampler.
    """
    name: str
    aliases: tuple[str, ...]
    options: Mapping[str, Any]
    function: Callable[..., Any]
    kind: str = "kdiffusion"
    extra_params: tuple[str, ...] = ()
    cfg_scale_multiplier: float = 1.0
    function_kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def default_scheduler(self) -> str | None:
        return self.options.get("scheduler")

    @property
    def second_order(self) -> bool:
        return bool(self.options.get("second_order", False))

    @property
    def uses_ensd(self) -> bool:
        return bool(self.options.get("uses_ensd", False))

    @property
    def brownian_noise(self) -> bool:
        return bool(self.options.get("brownian_noise", False))

    @property
    def discard_next_to_last_sigma(self) -> bool:
        return bool(self.options.get("discard_next_to_last_sigma", False))

    @property
    def eta_default(self) -> float:
        return 0.0 if self.kind == "timestep" else 1.0

    @property
    def eta_infotext_key(self) -> str:
        return "Eta DDIM" if self.kind == "timestep" else "Eta"


def _sampler(name: str, aliases: tuple[str, ...], options: dict[str, Any], function: Callable[..., Any],
             **fields: Any) -> SamplerInfo:
    return SamplerInfo(name, aliases, MappingProxyType(options), function, **fields)


SAMPLERS: tuple[SamplerInfo, ...] = (
    _sampler("DPM++ 2M", ("k_dpmpp_2m",), {"scheduler": "karras"}, k_sampling.sample_dpmpp_2m),
    _sampler("DPM++ SDE", ("k_dpmpp_sde",),
             {"scheduler": "karras", "second_order": True, "brownian_noise": True},
             k_sampling.sample_dpmpp_sde, extra_params=NOISE_PARAMS),
    _sampler("DPM++ 2M SDE", ("k_dpmpp_2m_sde",), {"scheduler": "exponential", "brownian_noise": True},
             k_sampling.sample_dpmpp_2m_sde, extra_params=NOISE_PARAMS),
    _sampler("DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",),
             {"scheduler": "exponential", "brownian_noise": True, "solver_type": "heun"},
             k_sampling.sample_dpmpp_2m_sde, extra_params=NOISE_PARAMS,
             function_kwargs=MappingProxyType({"solver_type": "heun"})),
    _sampler("DPM++ 2S a", ("k_dpmpp_2s_a",), {"scheduler": "karras", "uses_ensd": True, "second_order": True},
             k_sampling.sample_dpmpp_2s_ancestral, extra_params=NOISE_PARAMS),
    _sampler("DPM++ 3M SDE", ("k_dpmpp_3m_sde",),
             {"scheduler": "exponential", "discard_next_to_last_sigma": True, "brownian_noise": True},
             k_sampling.sample_dpmpp_3m_sde, extra_params=NOISE_PARAMS),
    _sampler("Euler a", ("k_euler_a", "k_euler_ancestral"), {"uses_ensd": True},
             k_sampling.sample_euler_ancestral, extra_params=NOISE_PARAMS),
    _sampler("Euler", ("k_euler",), {}, k_sampling.sample_euler, extra_params=CHURN_PARAMS),
    _sampler("LMS", ("k_lms",), {}, k_sampling.sample_lms),
    _sampler("Heun", ("k_heun",), {"second_order": True}, k_sampling.sample_heun, extra_params=CHURN_PARAMS),
    _sampler("DPM2", ("k_dpm_2",), {"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True},
             k_sampling.sample_dpm_2, extra_params=CHURN_PARAMS),
    _sampler("DPM2 a", ("k_dpm_2_a",),
             {"scheduler": "karras", "discard_next_to_last_sigma": True, "uses_ensd": True, "second_order": True},
             k_sampling.sample_dpm_2_ancestral, extra_params=NOISE_PARAMS),
    _sampler("DPM fast", ("k_dpm_fast",), {"uses_ensd": True}, k_sampling.sample_dpm_fast,
             extra_params=NOISE_PARAMS),
    _sampler("DPM adaptive", ("k_dpm_ad",), {"uses_ensd": True}, k_sampling.sample_dpm_adaptive),
    _sampler("Restart", ("restart",), {"scheduler": "karras", "second_order": True},
             timestep_samplers.sample_restart),
    _sampler("DDIM", ("ddim",), {}, timestep_samplers.sample_ddim, kind="timestep"),
    _sampler("DDIM CFG++", ("ddim_cfgpp",), {}, timestep_samplers.sample_ddim_cfgpp, kind="timestep",
             cfg_scale_multiplier=timestep_samplers.CFG_PP_SCALE_MULTIPLIER),
    _sampler("PLMS", ("plms",), {}, timestep_samplers.sample_plms, kind="timestep"),
    _sampler("UniPC", ("unipc",), {}, timestep_samplers.sample_unipc, kind="timestep"),
    _sampler("LCM", ("k_lcm",), {}, timestep_samplers.sample_lcm),
)
DEFAULT_SAMPLER = SAMPLERS[0]


def find_sampler(name: str | None) -> SamplerInfo | None:
    """Sampler by name or alias, case-insensitive (A1111 `find_sampler_config`); None if unknown."""
    if not name:
        return None
    wanted = name.lower()
    for sampler in SAMPLERS:
        if wanted == sampler.name.lower() or wanted in (alias.lower() for alias in sampler.aliases):
            return sampler
    return None


def get_sampler_and_scheduler(name: str | None, scheduler: str | None, *,
                              convert_automatic: bool = True) -> tuple[str, str]:
    """(sampler name, scheduler label) as A1111 resolves a request (§7.3).

    A trailing " Karras" / " Exponential" / … on the sampler name (pre-1.9 names) selects that
    scheduler. The sampler itself is looked up by exact name only (no aliases): unknown -> the first
    sampler. When the scheduler is the sampler's own default it is reported as "Automatic" unless
    convert_automatic is False."""
    found_scheduler = schedules.find_scheduler(scheduler) or schedules.AUTOMATIC
    sampler_name = name or DEFAULT_SAMPLER.name
    for candidate in schedules.SCHEDULERS:
        for spelling in (candidate.label, candidate.name, *(candidate.aliases or ())):
            if sampler_name.endswith(" " + spelling):
                found_scheduler = candidate
                sampler_name = sampler_name[:-(len(spelling) + 1)]
                break
    sampler = next((s for s in SAMPLERS if s.name == sampler_name), DEFAULT_SAMPLER)
    if convert_automatic and sampler.default_scheduler == found_scheduler.name:
        found_scheduler = schedules.AUTOMATIC
    return sampler.name, found_scheduler.label


def effective_scheduler(sampler: SamplerInfo, scheduler: str | None) -> schedules.SchedulerInfo:
    """The schedule that actually runs: the requested one, or for "Automatic" the sampler's default
    (still Automatic when it has none, meaning the model's own / the sampler's own spacing)."""
    requested = schedules.find_scheduler(scheduler) or schedules.AUTOMATIC
    if requested is schedules.AUTOMATIC and sampler.default_scheduler:
        return schedules.find_scheduler(sampler.default_scheduler) or schedules.AUTOMATIC
    return requested


def samplers_api_list() -> list[dict]:
    """`GET /sdapi/v1/samplers` items: options values are strings, as in A1111."""
    return [
        {"name": s.name, "aliases": list(s.aliases), "options": {k: str(v) for k, v in s.options.items()}}
        for s in SAMPLERS
    ]
