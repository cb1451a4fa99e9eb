"""A1111 compatibility view: `modules.sd_schedulers` — the noise schedules ("Schedule type")
as records with `name`, `label`, `aliases`, and `schedulers_map` (name and label → record)."""
from modules.engine.schedules import SCHEDULERS

schedulers = list(SCHEDULERS)
schedulers_map = {**{s.name: s for s in schedulers}, **{s.label: s for s in schedulers}}
