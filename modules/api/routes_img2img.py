"""POST /sdapi/v1/img2img (a1111-compat.md §3.2, §3.3): base64 init images and masks in, the
same response shape as txt2img out. Settings overrides, the job queue and the image encoding are
txt2img's (routes_generation)."""
from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, Callable

from fastapi import APIRouter, HTTPException
from PIL import Image

from modules.api.models import StableDiffusionImg2ImgProcessingAPI, TextToImageResponse
from modules.api.remote_images import RemoteImageError, is_url, remote_image_loader
from modules.api.request_infotext import apply_request_infotext
from modules.api.routes_generation import (resolve_sampler_fields, run_generation_request,
                                           script_args_for)
from modules.processing.admission import (AdmissionError, Limits, check_input_image, check_limit,
                                          pixels_in_decompression_bomb_error)
from modules.processing.images import decode_base64_to_image
from modules.processing.params import Img2ImgParams, Processed

if TYPE_CHECKING:
    from modules.app.context import AppContext
    from modules.jobs.service import JobService
    from modules.processing.context import ProcessingContext

Img2ImgRunner = Callable[[Img2ImgParams, "ProcessingContext"], Processed]

_PARAM_FIELDS = frozenset(field.name for field in dataclasses.fields(Img2ImgParams)) - \
    {"script_args"}
_IMAGE_FIELDS = ("init_images", "mask", "latent_mask")


def default_img2img_runner() -> Img2ImgRunner:
    # imported on first use: the processing stack pulls in torch and the engine
    from modules.processing.img2img import run_img2img
    return run_img2img


def decode_request_image(encoded: str, fetch_url: Callable[..., Image.Image] | None = None, *,
                         field: str = "image", limits: "Limits | None" = None) -> Image.Image:
    """A base64 image (raw or data-URL) → PIL; anything else is a 400 "Invalid encoded image".
    An http(s) URL is fetched with `fetch_url` (modules/api/remote_images.py: allowed by the
    options, never from local addresses); a refused one is a 4xx with the reason. With `limits`,
    an image above the input size limit is refused (AdmissionError, 422 naming `field`) from its
    header, before its pixels are decoded."""
    check_size = None if limits is None else functools.partial(check_input_image, limits, field)
    try:
        if is_url(encoded):
            return _fetch_image(encoded, fetch_url, check_size)
        return decode_base64_to_image(encoded, check_size)
    except Image.DecompressionBombError as error:
        raise _too_large_for_pil(error, field, limits) from error
    except AdmissionError:
        raise
    except ValueError as error:
        # A1111's words; a list's items are named, so a client knows which one was bad
        where = "" if field == "image" else f" in {field}"
        raise HTTPException(status_code=400, detail=f"Invalid encoded image{where}") from error


def _fetch_image(url: str, fetch_url: Callable[..., Image.Image] | None,
                 check_size: Callable[[int, int], None] | None) -> Image.Image:
    if fetch_url is None:
        raise HTTPException(status_code=400,
                            detail="Images from URLs are not supported here; send base64")
    try:
        return fetch_url(url, check_size=check_size) if check_size else fetch_url(url)
    except RemoteImageError as error:
        raise HTTPException(status_code=error.status_code, detail=error.message) from error


def _too_large_for_pil(error: Exception, field: str, limits: "Limits | None") -> Exception:
    """PIL refuses an image above twice its own pixel limit before its size reaches
    check_size: the same refusal, from the pixel count PIL reports."""
    pixels = pixels_in_decompression_bomb_error(error)
    if limits is not None and pixels is not None:
        megapixels = pixels / 1_000_000
        try:
            check_limit(limits, "limit_input_megapixels", field, megapixels,
                        shown=f"{megapixels:.1f} megapixels")
        except AdmissionError as refusal:
            return refusal
    return HTTPException(status_code=422, detail=f"{field}: {error}")


def build_img2img_params(request: StableDiffusionImg2ImgProcessingAPI,
                         fetch_url: Callable[..., Image.Image] | None = None,
                         limits: "Limits | None" = None) -> Img2ImgParams:
    if not request.init_images:
        raise HTTPException(status_code=404, detail="Init image not found")
    sampler, scheduler = resolve_sampler_fields(request)
    values = {key: value for key, value in request.model_dump().items()
              if key in _PARAM_FIELDS and key not in _IMAGE_FIELDS}

    def decode(encoded: str, field: str) -> Image.Image:
        return decode_request_image(encoded, fetch_url, field=field, limits=limits)

    values.update(
        sampler_name=sampler, scheduler=scheduler, is_api=True,
        init_images=[decode(image, f"init_images[{index}]")
                     for index, image in enumerate(request.init_images)],
        mask=decode(request.mask, "mask") if request.mask else None,
        latent_mask=decode(request.latent_mask, "latent_mask") if request.latent_mask else None,
        # A1111 ignores the request's own flags: saving follows save_images
        do_not_save_samples=not request.save_images, do_not_save_grid=not request.save_images)
    return Img2ImgParams(**values)


def prepare_img2img_request(ctx: "AppContext", request: StableDiffusionImg2ImgProcessingAPI
                            ) -> tuple[StableDiffusionImg2ImgProcessingAPI, Img2ImgParams]:
    """§3.3 steps 1-5: the request after its infotext prefill, and its processing params."""
    request = apply_request_infotext(request, ctx.options, getattr(ctx, "styles", None),
                                     ctx.scripts.infotext_pasted)
    script_args = script_args_for(ctx, request, is_img2img=True)
    # sizes, steps and prompts first: an image is decoded only for a request that may run
    ctx.admit_generation(request)
    params = build_img2img_params(request, fetch_url=remote_image_loader(ctx.options),
                                  limits=ctx.limits)
    params.script_args = script_args
    return request, params


def echoed_parameters(request: StableDiffusionImg2ImgProcessingAPI) -> dict[str, Any]:
    """The response's `parameters`: the request, images nulled unless include_init_images."""
    parameters = request.model_dump()
    if not request.include_init_images:
        parameters["init_images"] = None
        parameters["mask"] = None
    return parameters


def img2img_router(ctx: "AppContext", *, img2img_runner: Img2ImgRunner | None = None,
                   service: "JobService | None" = None) -> APIRouter:
    from modules.api.job_handlers import job_service_for  # it builds on this module
    jobs = service or job_service_for(ctx, img2img_runner=img2img_runner)
    router = APIRouter(prefix="/sdapi/v1")

    @router.post("/img2img", response_model=TextToImageResponse, tags=["generation"])
    def img2imgapi(request: StableDiffusionImg2ImgProcessingAPI) -> TextToImageResponse:
        request, _ = prepare_img2img_request(ctx, request)
        return run_generation_request(ctx, jobs, "img2img", request)

    return router
