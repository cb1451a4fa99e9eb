"""A1111 compatibility view: `modules.sd_samplers` — the sampler table as A1111's SamplerData
records, `samplers_map` (lower-case names and aliases → name), `find_sampler_config`."""
from modules.scripting.a1111_functions import (SamplerData, find_sampler_config,  # noqa: F401
                                               sampler_table, samplers_map as _samplers_map)

all_samplers = sampler_table()
samplers = all_samplers
samplers_for_img2img = all_samplers
samplers_map = _samplers_map()


def visible_sampler_names() -> list[str]:
    return [sampler.name for sampler in samplers]
