"""A1111's `modules.scripts.Script`: the base class community scripts subclass, with every
attribute and hook of a1111-compat.md §8.1-§8.2 (the hooks do nothing here; subclasses override
the ones they need), and the argument objects some hooks receive."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


class _AlwaysVisible:
    """Returned by `Script.show()` for an always-on script."""

    def __repr__(self) -> str:
        return "AlwaysVisible"


AlwaysVisible = _AlwaysVisible()


@dataclass
class PostprocessImageArgs:
    image: Any


@dataclass
class PostprocessBatchListArgs:
    images: list


@dataclass
class PostSampleArgs:
    samples: Any


@dataclass
class PostProcessMaskOverlayArgs:
    """postprocess_maskoverlay: the mask and the overlay (the original outside the mask) that
    will be put over image `index` of the batch; a script may replace either."""
    index: int
    mask_for_overlay: Any
    overlay_image: Any


@dataclass
class MaskBlendArgs:
    current_latent: Any
    nmask: Any
    init_latent: Any
    mask: Any
    blended_latent: Any
    denoiser: Any = None
    sigma: Any = None

    @property
    def is_final_blend(self) -> bool:
        return self.denoiser is None


class Script:
    """Subclass and override `title()`, `show()`, `ui()` and the hooks you need. Every hook gets
    the processing object `p` and the script's own argument values (its UI components' values,
    or what the API request gave for it) as positional arguments."""
    name: str | None = None
    section: str | None = None
    filename: str | None = None
    args_from: int | None = None
    args_to: int | None = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname: str | None = None
    group: Any = None
    create_group = True
    infotext_fields: list | None = None
    paste_field_names: list | None = None
    api_info: Any = None
    on_before_component_elem_id: list | None = None
    on_after_component_elem_id: list | None = None
    setup_for_ui_only = False
    controls: list | None = None

    # -- what the script is ----------------------------------------------------------------------
    def title(self) -> str:
        raise NotImplementedError(f"{type(self).__name__} has no title()")

    def show(self, is_img2img: bool) -> Any:
        return True

    def ui(self, is_img2img: bool) -> list:
        return []

    def describe(self) -> str:
        return ""

    def elem_id(self, item_id: str) -> str:
        """A1111's element ids: `script_<tab>_<title>_<item>`, lower case, non-word chars to _."""
        tab = "img2img" if self.is_img2img else "txt2img"
        title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))
        return f"script_{tab}_{title}_{item_id}"

    # -- hooks, in the order processing calls them ----------------------------------------------
    def run(self, p, *args):
        """Selectable scripts: do the whole job and return a Processed."""
        return None

    def setup(self, p, *args) -> None: ...

    def before_process(self, p, *args) -> None: ...

    def process(self, p, *args) -> None: ...

    def before_process_batch(self, p, *args, **kwargs) -> None: ...

    def after_extra_networks_activate(self, p, *args, **kwargs) -> None: ...

    def process_batch(self, p, *args, **kwargs) -> None: ...

    def process_before_every_sampling(self, p, *args, **kwargs) -> None: ...

    def on_mask_blend(self, p, mba: MaskBlendArgs, *args) -> None: ...

    def post_sample(self, p, ps: PostSampleArgs, *args) -> None: ...

    def postprocess_batch(self, p, *args, **kwargs) -> None: ...

    def postprocess_batch_list(self, p, pp: PostprocessBatchListArgs, *args, **kwargs) -> None: ...

    def postprocess_image(self, p, pp: PostprocessImageArgs, *args) -> None: ...

    def postprocess_maskoverlay(self, p, ppmo, *args) -> None: ...

    def postprocess_image_after_composite(self, p, pp: PostprocessImageArgs, *args) -> None: ...

    def before_hr(self, p, *args) -> None: ...

    def postprocess(self, p, processed, *args) -> None: ...

    # -- UI helpers ----------------------------------------------------------------------------
    def before_component(self, component, **kwargs) -> None: ...

    def after_component(self, component, **kwargs) -> None: ...

    def on_before_component(self, callback, *, elem_id: str) -> None:
        if self.on_before_component_elem_id is None:
            self.on_before_component_elem_id = []
        self.on_before_component_elem_id.append((elem_id, callback))

    def on_after_component(self, callback, *, elem_id: str) -> None:
        if self.on_after_component_elem_id is None:
            self.on_after_component_elem_id = []
        self.on_after_component_elem_id.append((elem_id, callback))
