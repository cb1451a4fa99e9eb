"""ui_reorder_list (A1111): the user's order of the parameter sections on txt2img and img2img."""
from __future__ import annotations

from modules.ui.section_order import UI_REORDER_CATEGORIES, section_order
from tests.ui.conftest import app_context


def test_named_sections_come_first_then_the_default_order():
    assert section_order([]) == list(UI_REORDER_CATEGORIES)
    order = section_order(["seed", "sampler", "seed", "unknown"])
    assert order[:2] == ["seed", "sampler"]
    assert sorted(order) == sorted(UI_REORDER_CATEGORIES)
    assert order[2:] == [name for name in UI_REORDER_CATEGORIES if name not in ("seed", "sampler")]


def page_order(blocks) -> list[str]:
    """elem_ids in page order (Gradio numbers blocks as they are created)."""
    return [block.elem_id for _, block in sorted(blocks.blocks.items())
            if getattr(block, "elem_id", None)]


def test_the_tabs_follow_the_configured_order(tmp_path):
    from modules.ui.app import build_ui
    with app_context(tmp_path) as ctx:
        default = page_order(build_ui(ctx))
        for tab in ("txt2img", "img2img"):
            assert default.index(f"{tab}_sampling") < default.index(f"{tab}_width") \
                < default.index(f"{tab}_seed") < default.index(f"{tab}_batch_count")
        ctx.options.set("ui_reorder_list", ["seed", "batch", "dimensions"])
        ordered = page_order(build_ui(ctx))
    for tab in ("txt2img", "img2img"):
        assert ordered.index(f"{tab}_seed") < ordered.index(f"{tab}_batch_count") \
            < ordered.index(f"{tab}_width") < ordered.index(f"{tab}_sampling")
    assert ordered.index("img2img_denoising_strength") > ordered.index("img2img_sampling")
