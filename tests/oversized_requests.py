"""Requests far above the server limits, as a careless or hostile client sends them, with what the
refusal must say. Shared by the in-process and the real-server admission tests."""
from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from dataclasses import dataclass, field

from PIL import Image

def detail_text(answer_json: dict) -> str:
    """The refusal's detail as text (FastAPI's validation errors are a list)."""
    detail = answer_json["detail"]
    return detail if isinstance(detail, str) else json.dumps(detail)


NORMAL_TXT2IMG = {"prompt": "a red circle", "steps": 2, "width": 64, "height": 64, "seed": 11}


def huge_png(width: int, height: int) -> bytes:
    """A real 1-bit PNG of width x height (every pixel black), written row by row so that neither
    this process nor PIL ever holds its pixels: ~50 KB on the wire for 20000 x 20000."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)      # filter byte + packed bits
    compressed = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)   # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", compressed) + \
        chunk(b"IEND", b"")


def small_png_b64(size: tuple[int, int] = (64, 64)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@dataclass
class Oversized:
    name: str
    path: str
    status: int
    says: tuple[str, ...]                 # substrings of the error's detail
    json: dict | None = None
    body_bytes: int = 0                   # a raw JSON body of this many bytes instead of `json`
    extra: dict = field(default_factory=dict)


def oversized_requests() -> list[Oversized]:
    huge = base64.b64encode(huge_png(20000, 20000)).decode()
    return [
        Oversized("width", "/sdapi/v1/txt2img", 422, ("width 100000", "4096", "limit_image_side"),
                  json={**NORMAL_TXT2IMG, "width": 100000}),
        Oversized("height", "/sdapi/v1/txt2img", 422,
                  ("height 100000", "4096", "limit_image_side"),
                  json={**NORMAL_TXT2IMG, "height": 100000}),
        Oversized("steps", "/sdapi/v1/txt2img", 422, ("steps 10000000", "500", "limit_steps"),
                  json={**NORMAL_TXT2IMG, "steps": 10000000}),
        Oversized("batch", "/sdapi/v1/txt2img", 422,
                  ("batch_size × n_iter", "80000", "800", "limit_images_per_request"),
                  json={**NORMAL_TXT2IMG, "batch_size": 8, "n_iter": 10000}),
        Oversized("hr_scale", "/sdapi/v1/txt2img", 422, ("hr_scale 100", "8", "limit_hr_scale"),
                  json={**NORMAL_TXT2IMG, "enable_hr": True, "hr_scale": 100}),
        Oversized("init image", "/sdapi/v1/img2img", 422,
                  ("init_images[0]", "400.0 megapixels", "64", "limit_input_megapixels"),
                  json={**NORMAL_TXT2IMG, "init_images": [huge]}),
        Oversized("mask", "/sdapi/v1/img2img", 422,
                  ("mask", "400.0 megapixels", "limit_input_megapixels"),
                  json={**NORMAL_TXT2IMG, "init_images": [small_png_b64()], "mask": huge}),
        # A1111's request schema bounds the factor itself: FastAPI's validation answer
        Oversized("extras 100x", "/sdapi/v1/extra-single-image", 422,
                  ("upscaling_resize", "100", "less than or equal to"),
                  json={"image": small_png_b64(), "upscaling_resize": 100,
                        "upscaler_1": "Lanczos"}),
        Oversized("body 300 MB", "/sdapi/v1/txt2img", 413,
                  ("300000000 bytes", "200 MB", "limit_request_mb"), body_bytes=300_000_000),
        Oversized("prompt 10^6", "/sdapi/v1/txt2img", 422,
                  ("prompt length 1000000", "30000", "limit_prompt_chars"),
                  json={**NORMAL_TXT2IMG, "prompt": "a" * 1_000_000}),
    ]


def raw_json_body(size: int) -> bytes:
    """A syntactically valid txt2img body of exactly `size` bytes (a very long prompt)."""
    head, tail = b'{"steps": 2, "prompt": "', b'"}'
    return head + b"a" * (size - len(head) - len(tail)) + tail
