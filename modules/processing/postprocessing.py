"""The extras pipeline (A1111's `postprocessing.run_extras`, a1111-compat.md §4.1): upscale by a
factor or to a size (with crop), an optional second upscaler blended in, and face restoration
blended in by visibility. Upscalers come from an `UpscalerRegistry`, restorers from
`face_restoration.FaceRestorers`.

Each output image keeps the input's metadata (`parameters` and the other text items) and gains a
`postprocessing` item: the infotext of what was done ("Postprocess upscale by: 2.0, ...").
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from PIL import Image

from modules.processing.face_restoration import CODEFORMER, GFPGAN, NO_FACE_NOTE, FaceRestorers
from modules.processing.images import read_info_from_image
from modules.processing.infotext import quote
from modules.processing.upscalers import UpscalerInfo, UpscalerRegistry

RESIZE_BY_FACTOR = 0   # resize_mode 0: scale by upscaling_resize
RESIZE_TO_SIZE = 1     # resize_mode 1: to upscaling_resize_w x upscaling_resize_h


class PostprocessingError(ValueError):
    """A request the extras pipeline cannot carry out (unknown upscaler, empty target size)."""


@dataclass(frozen=True)
class ExtrasSettings:
    """A1111's ExtrasBaseRequest fields under their request names."""
    resize_mode: int = RESIZE_BY_FACTOR
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str | None = "None"
    upscaler_2: str | None = "None"
    extras_upscaler_2_visibility: float = 0.0
    gfpgan_visibility: float = 0.0
    codeformer_visibility: float = 0.0
    codeformer_weight: float = 0.0
    upscale_first: bool = False


@dataclass
class PostprocessedImageSharedInfo:
    """What postprocessing scripts tell each other in their first pass (A1111's names)."""
    target_width: int | None = None
    target_height: int | None = None


@dataclass
class PostprocessedImage:
    """One image going through Extras (A1111's scripts_postprocessing.PostprocessedImage)."""
    image: Image.Image
    #: what was done, in order; becomes the `postprocessing` infotext
    info: dict[str, Any] = field(default_factory=dict)
    shared: PostprocessedImageSharedInfo = field(default_factory=PostprocessedImageSharedInfo)
    #: more results a script made from this one (PostprocessedImage, from create_copy), shown
    #: and saved after it
    extra_images: list[Any] = field(default_factory=list)
    nametags: list[str] = field(default_factory=list)
    disable_processing: bool = False
    caption: str | None = None
    #: messages of postprocessing scripts that raised on this image
    script_errors: list[str] = field(default_factory=list)
    #: what the user should know about this image ("GFPGAN: no face found …")
    notes: list[str] = field(default_factory=list)

    def result_images(self) -> list[Image.Image]:
        """This image and the extra ones scripts made (PIL images accepted there too)."""
        return [self.image, *(getattr(extra, "image", extra) for extra in self.extra_images)]

    def create_copy(self, new_image: Image.Image, *, nametags: list[str] | None = None,
                    disable_processing: bool = False) -> "PostprocessedImage":
        return PostprocessedImage(new_image, dict(self.info), self.shared,
                                  nametags=list(self.nametags) + list(nametags or []),
                                  disable_processing=disable_processing, caption=self.caption)

    def infotext(self) -> str:
        # A1111 writes a key alone when its value equals it, and skips None values
        return ", ".join(key if key == value else f"{key}: {quote(value)}"
                         for key, value in self.info.items() if value is not None)


@dataclass
class ExtrasResult:
    images: list[Image.Image]     # each with `.info`: the input's metadata + "postprocessing"
    infotext: str                 # the last image's postprocessing infotext
    #: postprocessing scripts that raised (the images are still there)
    script_errors: list[str] = field(default_factory=list)
    #: notes on the images (a face restorer that found no face)
    notes: list[str] = field(default_factory=list)

    @property
    def html_info(self) -> str:
        """The infotext, and below it the notes and which postprocessing scripts failed."""
        return plaintext_to_html("\n".join([self.infotext, *self.notes, *self.script_errors]))


def plaintext_to_html(text: str) -> str:
    """A1111's `ui_common.plaintext_to_html`: escaped lines joined by <br> inside one <p>."""
    return "<p>" + "<br>\n".join(html.escape(line) for line in text.split("\n")) + "</p>"


def _find_upscaler(registry: UpscalerRegistry, name: str | None) -> UpscalerInfo | None:
    """None for "None"/empty (A1111: the step is skipped); PostprocessingError for an unknown
    name."""
    if not name or name == "None":
        return None
    upscaler = registry.find(name)
    if upscaler is None:
        raise PostprocessingError(f"could not find upscaler named {name}")
    return upscaler


def upscale_image(image: Image.Image, scale: float, upscaler: UpscalerInfo) -> Image.Image:
    """A1111 `Upscaler.upscale`: the target is the scaled size rounded down to multiples of 8; the
    upscaler runs until it reaches the target (up to 3 times), then Lanczos to the exact size."""
    target = (int((image.width * scale) // 8 * 8), int((image.height * scale) // 8 * 8))
    if target[0] < 1 or target[1] < 1:
        raise PostprocessingError(
            f"upscaling {image.width}x{image.height} by {scale:g} gives an empty image")
    if upscaler.upscale is not None:
        for _ in range(3):
            before = image.size
            image = upscaler.upscale(image, scale)
            if image.size == before or (image.width >= target[0] and image.height >= target[1]):
                break
    if image.size != target:
        image = image.resize(target, resample=Image.Resampling.LANCZOS)
    return image


def _upscale_step(image: Image.Image, info: dict[str, Any], upscaler: UpscalerInfo,
                  settings: ExtrasSettings) -> Image.Image:
    if settings.resize_mode == RESIZE_TO_SIZE:
        width, height = settings.upscaling_resize_w, settings.upscaling_resize_h
        if width < 1 or height < 1:
            raise PostprocessingError("upscaling_resize_w and upscaling_resize_h must be positive")
        scale = max(width / image.width, height / image.height)
        info["Postprocess upscale to"] = f"{width}x{height}"
    else:
        scale = settings.upscaling_resize
        if not scale > 0:
            raise PostprocessingError("upscaling_resize must be greater than 0")
        info["Postprocess upscale by"] = float(scale)
    upscaled = upscale_image(image, scale, upscaler)
    if settings.resize_mode == RESIZE_TO_SIZE and settings.upscaling_crop:
        # centre the upscaled image on a canvas of exactly the requested size
        cropped = Image.new("RGB", (width, height))
        cropped.paste(upscaled, box=(width // 2 - upscaled.width // 2,
                                     height // 2 - upscaled.height // 2))
        upscaled = cropped
        info["Postprocess crop to"] = f"{width}x{height}"
    return upscaled


def run_upscale(pp: PostprocessedImage, settings: ExtrasSettings,
                registry: UpscalerRegistry) -> None:
    """A1111's "Upscale" postprocessing script: nothing happens when upscaler_1 is "None"."""
    first = _find_upscaler(registry, settings.upscaler_1)
    second = _find_upscaler(registry, settings.upscaler_2)
    if first is None:
        return
    upscaled = _upscale_step(pp.image, pp.info, first, settings)
    pp.info["Postprocess upscaler"] = first.name
    if second is not None and settings.extras_upscaler_2_visibility > 0:
        other = _upscale_step(pp.image, pp.info, second, settings)
        if other.mode != upscaled.mode:
            other = other.convert(upscaled.mode)
        upscaled = Image.blend(upscaled, other, settings.extras_upscaler_2_visibility)
        pp.info["Postprocess upscaler 2"] = second.name
    pp.image = upscaled


def run_face_restoration(pp: PostprocessedImage, settings: ExtrasSettings,
                         restorers: FaceRestorers) -> None:
    """A1111's GFPGAN then CodeFormer scripts: the restored image blended in by visibility
    (CodeFormer at the request's weight). UnsupportedRequestError when a visibility > 0 asks
    for a restorer that is not installed."""
    steps = ((GFPGAN, settings.gfpgan_visibility), (CODEFORMER, settings.codeformer_visibility))
    for name, visibility in steps:
        if visibility <= 0:
            continue
        restored = restorers.get(name).restore(pp.image,
                                               codeformer_weight=settings.codeformer_weight)
        if restored.faces == 0:
            pp.notes.append(f"{name}: {NO_FACE_NOTE}")
        image = restored.image.convert(pp.image.mode)
        pp.image = Image.blend(pp.image, image, visibility) if visibility < 1.0 else image
        pp.info[f"{name} visibility"] = round(visibility, 3)
        if name == CODEFORMER:
            pp.info["CodeFormer weight"] = round(settings.codeformer_weight, 3)


def check_face_restorers(settings: ExtrasSettings, restorers: FaceRestorers) -> None:
    """Refuse before any work when a requested restorer is missing (same errors as the run)."""
    for name, visibility in ((GFPGAN, settings.gfpgan_visibility),
                             (CODEFORMER, settings.codeformer_visibility)):
        if visibility > 0:
            restorers.check(name)


def postprocess_image(image: Image.Image, settings: ExtrasSettings, *,
                      upscalers: UpscalerRegistry, restorers: FaceRestorers,
                      enable_pnginfo: bool = True, scripts: Any = None,
                      script_values: dict[str, dict] | None = None) -> PostprocessedImage:
    """One image through the extras steps. `upscale_first` picks the order of upscaling and face
    restoration (A1111 before its postprocessing scripts; 1.10 ignores it and upscales first).
    Then the extensions' postprocessing scripts (`scripts.run(pp, script_values)`)."""
    geninfo, existing_info = read_info_from_image(image)
    if geninfo:
        existing_info["parameters"] = geninfo
    pp = PostprocessedImage(image.convert("RGB"))

    def restore() -> None:
        run_face_restoration(pp, settings, restorers)

    steps: list[Callable[[], None]] = [lambda: run_upscale(pp, settings, upscalers), restore]
    for step in steps if settings.upscale_first else reversed(steps):
        step()
    if scripts is not None:
        scripts.run(pp, script_values)
    for image in pp.result_images():
        image.info = {**existing_info, "postprocessing": pp.infotext()} if enable_pnginfo else {}
    return pp


def run_extras(images: Sequence[Image.Image], settings: ExtrasSettings, *,
               upscalers: UpscalerRegistry, restorers: FaceRestorers,
               enable_pnginfo: bool = True, on_image: Callable[[int, int], None] | None = None,
               scripts: Any = None, script_values: dict[str, dict] | None = None) -> ExtrasResult:
    """Every image through the extras steps; `on_image(index, count)` before each one."""
    check_face_restorers(settings, restorers)
    outputs: list[Image.Image] = []
    errors: list[str] = []
    notes: list[str] = []
    infotext = ""
    for index, image in enumerate(images):
        if on_image is not None:
            on_image(index, len(images))
        pp = postprocess_image(image, settings, upscalers=upscalers, restorers=restorers,
                               enable_pnginfo=enable_pnginfo, scripts=scripts,
                               script_values=script_values)
        outputs += pp.result_images()
        errors += pp.script_errors
        notes += [f"{f'Image {index + 1}: ' if len(images) > 1 else ''}{note}"
                  for note in pp.notes]
        infotext = pp.infotext()
    return ExtrasResult(images=outputs, infotext=infotext, script_errors=errors, notes=notes)
