"""POST /sdapi/v1/extra-single-image, /extra-batch-images, /png-info and /interrogate
(a1111-compat.md §4.1-§4.3, §9.5).

Extras run on the job worker (A1111 takes the queue lock) through `processing.postprocessing`;
results are returned, never saved (A1111's API passes save_output=False).
"""
from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any, Callable, Mapping

from fastapi import APIRouter, HTTPException
from PIL import Image

from modules.api.models import (ExtrasBaseRequest, ExtrasBatchImagesRequest,
                                ExtrasBatchImagesResponse, ExtrasSingleImageRequest,
                                ExtrasSingleImageResponse, InterrogateRequest,
                                InterrogateResponse, PNGInfoRequest, PNGInfoResponse)
from modules.api.remote_images import remote_image_loader
from modules.api.routes_img2img import decode_request_image
from modules.processing.admission import Limits, check_extras
from modules.processing.images import IMAGE_FORMATS, read_info_from_image, write_image
from modules.processing.infotext import parse_generation_parameters
from modules.processing.interrogation import MODELS as INTERROGATE_MODELS
from modules.processing.interrogation import InterrogationError
from modules.processing.postprocessing import (ExtrasResult, ExtrasSettings, PostprocessingError,
                                               run_extras)

if TYPE_CHECKING:
    from modules.app.context import AppContext
    from modules.jobs.progress import JobProgress



def extras_settings(request: ExtrasBaseRequest) -> ExtrasSettings:
    return ExtrasSettings(
        resize_mode=request.resize_mode, upscaling_resize=request.upscaling_resize,
        upscaling_resize_w=request.upscaling_resize_w,
        upscaling_resize_h=request.upscaling_resize_h, upscaling_crop=request.upscaling_crop,
        upscaler_1=request.upscaler_1, upscaler_2=request.upscaler_2,
        extras_upscaler_2_visibility=request.extras_upscaler_2_visibility,
        gfpgan_visibility=request.gfpgan_visibility,
        codeformer_visibility=request.codeformer_visibility,
        codeformer_weight=request.codeformer_weight, upscale_first=request.upscale_first)


def encode_with_metadata(image: Image.Image, fmt: str, jpeg_quality: int = 80) -> str:
    """A1111's `encode_pil_to_base64`: a PNG carries every text item of `image.info` (the input's
    `parameters` plus `postprocessing`); JPEG/WEBP carry `parameters` as EXIF UserComment."""
    image_format = IMAGE_FORMATS.get(fmt.lower().lstrip("."), "PNG")
    buffer = io.BytesIO()
    if image_format == "PNG":
        chunks = {key: value for key, value in (image.info or {}).items()
                  if isinstance(key, str) and isinstance(value, str)}
        write_image(image, buffer, "PNG", infotext=None, pnginfo=chunks)
    else:
        write_image(image, buffer, image_format, infotext=(image.info or {}).get("parameters"),
                    jpeg_quality=jpeg_quality)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def run_extras_job(ctx: "AppContext", images: list[Image.Image], names: list[str],
                   request: ExtrasBaseRequest) -> ExtrasResult:
    """The extras job on the worker; unknown upscalers and empty sizes are a 400, an upscale
    above the server limits a 422 before the job is queued."""
    settings = extras_settings(request)
    options = ctx.options
    check_extras(ctx.limits, settings, [image.size for image in images])

    def job(progress: "JobProgress") -> ExtrasResult:
        def on_image(index: int, count: int) -> None:
            if index == 0:
                progress.begin(count)
            else:
                progress.next_job()
            progress.set_textinfo(names[index] or None)

        return run_extras(images, settings, upscalers=ctx.upscalers,
                          restorers=ctx.face_restorers,
                          enable_pnginfo=bool(options.get("enable_pnginfo")), on_image=on_image,
                          scripts=ctx.scripts.postprocessing)

    try:
        return ctx.jobs.run("extras", job)
    except PostprocessingError as error:
        raise HTTPException(status_code=400, detail=str(error)) from error


def _encode_results(ctx: "AppContext", result: ExtrasResult) -> list[str]:
    fmt = ctx.options.get("samples_format") or "png"
    quality = int(ctx.options.get("jpeg_quality") or 80)
    return [encode_with_metadata(image, fmt, quality) for image in result.images]


def json_safe_items(items: Mapping[str, Any]) -> dict[str, Any]:
    """Image metadata as JSON: bytes decoded, tuples as lists, anything else as text."""
    def convert(value: Any) -> Any:
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        if isinstance(value, (list, tuple)):
            return [convert(item) for item in value]
        if isinstance(value, dict):
            return {str(key): convert(item) for key, item in value.items()}
        return str(value)
    return {str(key): convert(value) for key, value in items.items()}


def png_info_response(encoded: str, fetch_url: Callable[..., Image.Image] | None = None,
                      limits: "Limits | None" = None) -> PNGInfoResponse:
    """§4.2: the image's infotext, its other metadata, and the infotext parsed."""
    if not encoded.strip():
        return PNGInfoResponse(info="", items={}, parameters={})
    image = decode_request_image(encoded.strip(), fetch_url, limits=limits)
    geninfo, items = read_info_from_image(image)
    geninfo = geninfo or ""
    # parsed even when empty, like A1111: the defaults it fills in are part of the answer
    parameters = parse_generation_parameters(geninfo)
    return PNGInfoResponse(info=geninfo, items=json_safe_items(items),
                           parameters=json_safe_items(parameters))


def postprocessing_router(ctx: "AppContext") -> APIRouter:
    """The routes; interrogate uses `ctx.interrogators` (404 naming the folder and file when
    the asked model's weights are absent)."""
    router = APIRouter(prefix="/sdapi/v1")

    def decode(encoded: str, field: str = "image") -> Image.Image:
        # URLs are fetched only as the api_enable_requests / api_forbid_local_requests allow;
        # an image above the input size limit is refused before its pixels are decoded
        return decode_request_image(encoded, remote_image_loader(ctx.options), field=field,
                                    limits=ctx.limits)

    @router.post("/extra-single-image", response_model=ExtrasSingleImageResponse,
                 tags=["postprocessing"])
    def extras_single_image_api(request: ExtrasSingleImageRequest) -> ExtrasSingleImageResponse:
        if not request.image:
            raise HTTPException(status_code=400, detail="Invalid encoded image: image is empty")
        image = decode(request.image)
        result = run_extras_job(ctx, [image], [""], request)
        return ExtrasSingleImageResponse(html_info=result.html_info,
                                         image=_encode_results(ctx, result)[0])

    @router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse,
                 tags=["postprocessing"])
    def extras_batch_images_api(request: ExtrasBatchImagesRequest) -> ExtrasBatchImagesResponse:
        images = [decode(item.data, f"imageList[{index}]")
                  for index, item in enumerate(request.imageList)]
        result = run_extras_job(ctx, images, [item.name for item in request.imageList], request)
        return ExtrasBatchImagesResponse(html_info=result.html_info,
                                         images=_encode_results(ctx, result))

    @router.post("/png-info", response_model=PNGInfoResponse, tags=["postprocessing"])
    def pnginfoapi(request: PNGInfoRequest) -> PNGInfoResponse:
        return png_info_response(request.image, remote_image_loader(ctx.options), ctx.limits)

    @router.post("/interrogate", response_model=InterrogateResponse, tags=["postprocessing"])
    def interrogateapi(request: InterrogateRequest) -> InterrogateResponse:
        if not request.image:
            raise HTTPException(status_code=404, detail="Image not found")
        image = decode(request.image).convert("RGB")
        if request.model not in INTERROGATE_MODELS:
            raise HTTPException(status_code=404, detail="Model not found")
        interrogators = ctx.interrogators
        problem = interrogators.missing(request.model) if interrogators is not None \
            else "no interrogator is set up"
        if problem is not None:
            raise HTTPException(status_code=404, detail=f"Model not found: {problem}")
        try:
            caption = ctx.jobs.run("interrogate",
                                   lambda progress: interrogators.interrogate(image, request.model))
        except InterrogationError as error:
            raise HTTPException(status_code=400, detail=str(error)) from error
        return InterrogateResponse(caption=caption)

    return router
