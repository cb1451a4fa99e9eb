"""Saving images the way A1111 does: `NNNNN-<pattern>.<ext>` names, [tag] file name patterns,
infotext embedded as PNG text / EXIF UserComment, grids, base64 for the API, and reading the
infotext back out of any of those (a1111-compat.md §5.3, §11.4)."""
from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import math
import os
import re
import string
import struct
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import piexif
import piexif.helper
from PIL import Image, ImageColor, PngImagePlugin, UnidentifiedImageError

log = logging.getLogger(__name__)

# file extension → Pillow format
IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}
_EXIF_FORMATS = ("JPEG", "WEBP")

IGNORED_INFO_KEYS = frozenset({
    "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop", "background",
    "timestamp", "duration", "progressive", "progression", "icc_profile", "chromaticity",
    "photoshop"})

# NovelAI's sampler names (k-diffusion function names) → A1111 sampler names
NOVELAI_SAMPLERS = {
    "k_euler_ancestral": "Euler a", "k_euler": "Euler", "k_lms": "LMS", "k_heun": "Heun",
    "k_dpm_2": "DPM2", "k_dpm_2_ancestral": "DPM2 a", "k_dpmpp_2s_ancestral": "DPM++ 2S a",
    "k_dpmpp_2m": "DPM++ 2M", "k_dpmpp_sde": "DPM++ SDE", "k_dpm_fast": "DPM fast",
    "k_dpm_adaptive": "DPM adaptive", "ddim": "DDIM", "plms": "PLMS",
}

_INVALID_FILENAME_CHARS = '#<>:"/\\|?*\n\r\t'
_MAX_FILENAME_PART = 128
_NON_LETTERS = re.compile(r"[\s" + re.escape(string.punctuation) + r"]+")
_TAG_PATTERN = re.compile(r"(.*?)(?:\[([^\[\]]+)\]|$)", re.DOTALL)
_TAG_ARGUMENT = re.compile(r"(.*)<([^>]*)>$")


def sanitize_filename_part(text: str, replace_spaces: bool = True) -> str:
    """A piece of a file name: no path separators or characters Windows forbids, ≤128 chars."""
    if replace_spaces:
        text = text.replace(" ", "_")
    text = text.translate({ord(char): "_" for char in _INVALID_FILENAME_CHARS})
    return text.lstrip(" ")[:_MAX_FILENAME_PART].rstrip(" .")


class FilenameGenerator:
    """Expands A1111 file name patterns such as "[seed]-[prompt_words]" or "[datetime<%Y%m%d>]".

    `context` carries per-image values: seed, steps, cfg, width, height, sampler, model_name,
    model_hash, prompt, styles (list), job_timestamp, batch_number, generation_number, seed_first,
    seed_last, batch_size, clip_skip, denoising, vae_filename, user. A tag whose value is unknown
    stays in the name literally, as in A1111.
    """

    def __init__(self, context: dict[str, Any] | None = None, *, max_prompt_words: int = 8,
                 now: datetime | None = None) -> None:
        self.context = dict(context or {})
        self.max_prompt_words = max_prompt_words
        self.now = now or datetime.now()
        self._tags: dict[str, Callable[..., Any]] = {
            "prompt": lambda: sanitize_filename_part(self.context["prompt"]),
            "prompt_spaces": lambda: sanitize_filename_part(self.context["prompt"], False),
            "prompt_words": self._prompt_words,
            "date": lambda: self.now.strftime("%Y-%m-%d"),
            "datetime": self._datetime,
            "styles": lambda: ", ".join(s for s in self.context["styles"] if s) or None,
            "none": lambda: "",
        }

    def _prompt_words(self) -> str:
        words = [word for word in _NON_LETTERS.split(self.context.get("prompt") or "") if word]
        return sanitize_filename_part(" ".join((words or ["empty"])[:self.max_prompt_words]), False)

    def _datetime(self, fmt: str = "%Y%m%d%H%M%S", *_: str) -> str:
        return self.now.strftime(fmt or "%Y%m%d%H%M%S")

    def _value(self, tag: str, args: list[str]) -> str | None:
        handler = self._tags.get(tag)
        if handler is not None:
            value = handler(*args)
        else:
            value = self.context.get(tag)
            if isinstance(value, (list, tuple)):
                value = ", ".join(str(v) for v in value)
        return None if value is None else sanitize_filename_part(str(value), replace_spaces=False)

    def apply(self, pattern: str) -> str:
        result = ""
        for match in _TAG_PATTERN.finditer(pattern):
            text, tag = match.groups()
            if tag is None:
                result += text
                continue
            args: list[str] = []
            name = tag
            while (arg_match := _TAG_ARGUMENT.match(name)) is not None:
                name, argument = arg_match.groups()
                args.insert(0, argument)
            try:
                value = self._value(name.lower(), args)
            except (KeyError, TypeError, ValueError):
                value = None
            result += text + (value if value is not None else f"[{tag}]")
        return result


def next_sequence_number(directory: Path, basename: str = "") -> int:
    """1 + the largest number prefix of the files in `directory` (0 when there are none)."""
    prefix = f"{basename}-" if basename else ""
    largest = -1
    if directory.is_dir():
        for entry in os.listdir(directory):
            if not entry.startswith(prefix):
                continue
            first = os.path.splitext(entry[len(prefix):])[0].split("-")[0]
            if first.isdigit():
                largest = max(largest, int(first))
    return largest + 1


@dataclass
class ImageSaveParams:
    """What `on_before_save` may change before the file is written (A1111's ImageSaveParams:
    image, p, filename, pnginfo)."""
    image: Image.Image
    filename: str
    pnginfo: dict[str, Any] = field(default_factory=dict)
    p: Any = None          # the processing object of the job that made the image, when known


def _exif_with_comment(text: str) -> bytes:
    return piexif.dump({"Exif": {piexif.ExifIFD.UserComment:
                                 piexif.helper.UserComment.dump(text, encoding="unicode")}})


def write_image(image: Image.Image, target: str | Path, image_format: str, *,
                infotext: str | None, pnginfo: dict[str, Any] | None = None,
                pnginfo_section: str = "parameters", jpeg_quality: int = 80,
                webp_lossless: bool = False) -> None:
    """Write `image` with its infotext: PNG text chunks (Pillow uses iTXt for non-Latin-1 text),
    EXIF UserComment (UTF-16) for JPEG/WEBP, the comment extension for GIF."""
    if image_format == "PNG":
        chunks = dict(pnginfo or {})
        if infotext is not None:
            chunks[pnginfo_section] = infotext
        png_info = PngImagePlugin.PngInfo()
        for key, value in chunks.items():
            png_info.add_text(key, str(value))
        image.save(target, format="PNG", pnginfo=png_info)
    elif image_format in _EXIF_FORMATS:
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGB")
        elif image.mode == "I;16":
            image = image.point(lambda value: value * (255 / 65535)).convert("RGB")
        extra: dict[str, Any] = {"exif": _exif_with_comment(infotext)} if infotext else {}
        image.save(target, format=image_format, quality=jpeg_quality,
                   lossless=webp_lossless, **extra)
    elif image_format == "GIF":
        image.save(target, format="GIF", **({"comment": infotext} if infotext else {}))
    else:
        raise ValueError("Invalid image format")


def save_image(image: Image.Image, directory: Path, *, basename: str = "", seed: int | None = None,
               prompt: str | None = None, extension: str = "png", infotext: str | None = None,
               pnginfo_section: str = "parameters", short_filename: bool = False,
               forced_filename: str | None = None, suffix: str = "", jpeg_quality: int = 80,
               webp_lossless: bool = False, add_number: bool = True,
               filename_pattern: str = "[seed]", dir_pattern: str | None = "[date]",
               namegen_context: dict | None = None, existing_info: dict | None = None,
               embed_infotext: bool = True, save_txt: bool = False, max_prompt_words: int = 8,
               on_before_save: Callable[[ImageSaveParams], None] | None = None,
               on_saved: Callable[[ImageSaveParams], None] | None = None,
               ) -> tuple[str, str | None]:
    """Save as `<dir>/<dir_pattern>/<NNNNN>-<filename_pattern><suffix>.<ext>` (grids:
    basename "grid" → `grid-NNNN.png`). Returns (image path, .txt sidecar path or None).
    `embed_infotext=False` is A1111's enable_pnginfo off; `save_txt` its save_txt."""
    extension = extension.lower().lstrip(".")
    image_format = IMAGE_FORMATS.get(extension)
    if image_format is None:
        raise ValueError("Invalid image format")
    too_large = {"JPEG": 65535, "WEBP": 16383}.get(image_format)
    if too_large is not None and max(image.size) > too_large:
        log.warning("Image dimensions too large for %s; saving as PNG", extension)
        extension, image_format = "png", "PNG"

    context = dict(namegen_context or {})
    if seed is not None:
        context.setdefault("seed", seed)
    if prompt is not None:
        context.setdefault("prompt", prompt)
    namegen = FilenameGenerator(context, max_prompt_words=max_prompt_words)
    directory = Path(directory)
    if dir_pattern:
        subdirectory = namegen.apply(dir_pattern).lstrip(" ").rstrip("\\ /")
        if subdirectory:
            directory = directory / subdirectory
    directory.mkdir(parents=True, exist_ok=True)

    if forced_filename is not None:
        stem = sanitize_filename_part(forced_filename, replace_spaces=False)
    else:
        decoration = "" if short_filename or seed is None else namegen.apply(filename_pattern)
        decoration += suffix
        number_needed = add_number or decoration == ""
        if not number_needed:
            stem = decoration
        else:
            start = next_sequence_number(directory, basename)
            decoration = f"-{decoration}" if decoration else ""
            for offset in range(500):
                number = f"{start + offset:05}" if not basename else f"{basename}-{start + offset:04}"
                stem = f"{number}{decoration}"
                if not (directory / f"{stem}.{extension}").exists():
                    break
    max_name = _max_name_length(directory) - len(extension) - 5
    params = ImageSaveParams(image, str(directory / f"{stem[:max_name]}.{extension}"),
                             dict(existing_info or {}))
    if infotext is not None:
        params.pnginfo[pnginfo_section] = infotext
    if on_before_save is not None:
        on_before_save(params)

    final_path = Path(params.filename)
    text = params.pnginfo.get(pnginfo_section) if embed_infotext else None
    chunks = {k: v for k, v in params.pnginfo.items() if k != pnginfo_section} \
        if embed_infotext else {}
    temp_path = final_path.with_name(final_path.name + ".tmp")
    try:
        write_image(params.image, temp_path, image_format, infotext=text, pnginfo=chunks,
                    pnginfo_section=pnginfo_section, jpeg_quality=jpeg_quality,
                    webp_lossless=webp_lossless)
        os.replace(temp_path, final_path)   # a reader never sees a half-written image
    finally:
        if temp_path.exists():
            temp_path.unlink()

    txt_path = None
    infotext_now = params.pnginfo.get(pnginfo_section)
    if save_txt and infotext_now is not None:
        txt_path = str(final_path.with_suffix(".txt"))
        Path(txt_path).write_text(f"{infotext_now}\n", encoding="utf-8")
    if on_saved is not None:
        on_saved(params)
    return str(final_path), txt_path


def _max_name_length(directory: Path) -> int:
    try:
        return os.statvfs(directory).f_namemax
    except (AttributeError, OSError):   # Windows has no statvfs
        return 255


def grid_rows(count: int, *, rows: int | None = None, batch_size: int = 1,
              prevent_empty_spots: bool = False) -> int:
    """A1111's row rule: rows > 0 as given; 0 → batch size; None/-1 → about sqrt(count)."""
    if rows is None or rows < 0:
        if prevent_empty_spots:
            rows = max(1, math.floor(math.sqrt(count)))
            while count % rows != 0:
                rows -= 1
        else:
            rows = round(math.sqrt(count))
    elif rows == 0:
        rows = batch_size
    return max(1, min(rows, count))


def image_grid(images: Sequence[Image.Image], rows: int | None = None, *, batch_size: int = 1,
               prevent_empty_spots: bool = False, background: str = "#ffffff") -> Image.Image:
    """Images pasted on a rows × cols grid of cells as large as the largest image (smaller images
    centred). `rows` is the n_rows setting: -1/None auto, 0 batch size."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    rows = grid_rows(len(images), rows=rows, batch_size=batch_size,
                     prevent_empty_spots=prevent_empty_spots)
    cols = math.ceil(len(images) / rows)
    cell_w = max(image.width for image in images)
    cell_h = max(image.height for image in images)
    grid = Image.new("RGB", (cols * cell_w, rows * cell_h), ImageColor.getcolor(background, "RGB"))
    for index, image in enumerate(images):
        x = (index % cols) * cell_w + (cell_w - image.width) // 2
        y = (index // cols) * cell_h + (cell_h - image.height) // 2
        grid.paste(image, (x, y))
    return grid


def _novelai_infotext(image: Image.Image, items: dict[str, Any]) -> str | None:
    try:
        info = json.loads(items["Comment"])
        sampler = NOVELAI_SAMPLERS.get(str(info.get("sampler", "")).lower(), "Euler a")
        return (f"{items['Description']}\nNegative prompt: {info['uc']}\n"
                f"Steps: {info['steps']}, Sampler: {sampler}, CFG scale: {info['scale']}, "
                f"Seed: {info['seed']}, Size: {image.width}x{image.height}, Clip skip: 2, "
                f"ENSD: 31337")
    except (KeyError, TypeError, ValueError) as error:
        log.warning("Cannot convert NovelAI metadata: %s", error)
        return None


def read_info_from_image(image: Image.Image) -> tuple[str | None, dict[str, Any]]:
    """(infotext or None, the image's other metadata). PNG `parameters` (tEXt/iTXt/zTXt), EXIF
    UserComment (wins when present), GIF comment; NovelAI PNGs converted to A1111 text."""
    items = dict(image.info or {})
    geninfo = items.pop("parameters", None)
    if "exif" in items:
        try:
            exif = piexif.load(items["exif"])
        except (ValueError, OSError, struct.error):
            exif = {}
        comment = (exif.get("Exif") or {}).get(piexif.ExifIFD.UserComment, b"")
        try:
            decoded = piexif.helper.UserComment.load(comment) if comment else ""
        except ValueError:
            decoded = comment.decode("utf-8", errors="ignore")
        if decoded:
            geninfo = decoded
    elif "comment" in items:
        comment = items["comment"]
        geninfo = comment.decode("utf-8", errors="ignore") if isinstance(comment, bytes) else comment
    for key in IGNORED_INFO_KEYS:
        items.pop(key, None)
    if items.get("Software") == "NovelAI":
        geninfo = _novelai_infotext(image, items) or geninfo
    return (str(geninfo) if geninfo is not None else None), items


_DATA_URL = re.compile(r"^data:[^,]*?;base64,", re.IGNORECASE)


def encode_image_to_base64(image: Image.Image, *, fmt: str = "png", infotext: str | None = None,
                           jpeg_quality: int = 80) -> str:
    """Raw base64 (no data-URL prefix) of the image in `fmt`, infotext embedded when given."""
    image_format = IMAGE_FORMATS.get(fmt.lower().lstrip("."))
    if image_format is None:
        raise ValueError("Invalid image format")
    buffer = io.BytesIO()
    write_image(image, buffer, image_format, infotext=infotext, jpeg_quality=jpeg_quality)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


ImageSizeCheck = Callable[[int, int], None]


def decode_base64_to_image(text: str, check_size: ImageSizeCheck | None = None) -> Image.Image:
    """Base64 with or without a `data:image/...;base64,` prefix → a loaded PIL image.
    `check_size(width, height)` runs on the size read from the file's header, before the pixels
    are decoded, and may raise to refuse the image (PIL's own decompression-bomb guard raises
    Image.DecompressionBombError first for images above twice its limit)."""
    try:
        payload = _DATA_URL.sub("", text.strip(), count=1)
        image = Image.open(io.BytesIO(base64.b64decode(payload, validate=False)))
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError, AttributeError) as error:
        raise ValueError("Invalid encoded image") from error
    if check_size is not None:
        check_size(*image.size)
    try:
        image.load()
    except (OSError, ValueError) as error:
        raise ValueError("Invalid encoded image") from error
    return image


def write_params_txt(path: Path, infotext: str) -> None:
    """params.txt in the data folder: the infotext of the last generation."""
    Path(path).write_text(infotext, encoding="utf-8")
