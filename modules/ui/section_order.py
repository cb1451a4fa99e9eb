"""A1111's `ui_reorder_list` setting: the order of the parameter sections in the left column of
txt2img and img2img. Named sections come first, in the user's order; the others follow in the
default order. A category a tab does not have (e.g. "inpaint" on txt2img) is skipped; "scripts"
holds the always-on scripts' controls and the Script dropdown."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from modules.app.option_defs import UI_REORDER_CATEGORIES


def section_order(user_order: Sequence[str] | None) -> list[str]:
    """Every category once: the known ones the user named (first mention wins), then the rest."""
    named = [name for name in dict.fromkeys(user_order or []) if name in UI_REORDER_CATEGORIES]
    return named + [name for name in UI_REORDER_CATEGORIES if name not in named]


def build_sections_in_order(user_order: Sequence[str] | None,
                            builders: Mapping[str, Callable[[], Any]]) -> dict[str, Any]:
    """Call the tab's section builders (in the current layout) in the configured order; returns
    each section's result by category."""
    return {name: builders[name]() for name in section_order(user_order) if name in builders}
