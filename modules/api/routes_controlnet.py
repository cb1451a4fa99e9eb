"""sd-webui-controlnet's routes: /controlnet/version, /model_list, /module_list, /control_types,
/settings and /detect, with its field names and answers, so its clients work unchanged."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import APIRouter, Body, HTTPException
from PIL import Image

from modules.controlnet import API_VERSION
from modules.controlnet.models import control_type_of
from modules.controlnet.units import ControlNetUnit, UnitError, to_image
from modules.controlnet.apply import detect
from modules.controlnet.pose import draw_pose, pose_from_json
from modules.processing.images import encode_image_to_base64

if TYPE_CHECKING:
    from modules.app.context import AppContext


def controlnet_router(ctx: "AppContext") -> APIRouter:
    router = APIRouter(prefix="/controlnet", tags=["controlnet"])
    service = ctx.controlnet

    @router.get("/version")
    def version() -> dict[str, int]:
        return {"version": API_VERSION}

    @router.get("/model_list")
    def model_list(update: bool = True) -> dict[str, list[str]]:
        """Every ControlNet in models/ControlNet ("stem [hash]"); `update` re-scans first."""
        if update:
            service.models.refresh()
        return {"model_list": service.models.names()}

    @router.get("/module_list")
    def module_list(alias_names: bool = False) -> dict[str, Any]:
        names = service.preprocessors.names()
        return {"module_list": names,
                "module_detail": {name: service.preprocessors.get(name).detail()
                                  for name in names}}

    @router.get("/control_types")
    def control_types() -> dict[str, Any]:
        files = service.models.files()
        types = {}
        for control_type in service.preprocessors.control_types():
            modules = service.preprocessors.for_control_type(control_type)
            fitting = [item for item in files
                       if control_type == "All" or control_type_of(item.name) == control_type]
            usable = [item.name for item in fitting if not item.problem]
            types[control_type] = {
                "module_list": modules, "model_list": ["None", *(i.name for i in fitting)],
                "default_option": modules[1] if control_type != "All" and len(modules) > 1
                else modules[0],
                "default_model": usable[0] if control_type != "All" and usable else "None"}
        return {"control_types": types}

    @router.get("/settings")
    def settings() -> dict[str, int]:
        return {"control_net_unit_count": service.unit_count}

    @router.post("/detect")
    def detect_route(
        controlnet_module: str = Body("none"),
        controlnet_input_images: list[str] = Body([]),
        controlnet_images: list[str] = Body([], description="the same, as some clients name it"),
        controlnet_processor_res: float = Body(-1),
        controlnet_threshold_a: float = Body(-1),
        controlnet_threshold_b: float = Body(-1),
        controlnet_masks: list[str] = Body([]),
        low_vram: bool = Body(False),
    ) -> dict[str, Any]:
        """Run a preprocessor on images: the detected maps as base64 PNGs."""
        preprocessor = service.preprocessors.get(controlnet_module)
        if preprocessor is None:
            raise HTTPException(422, f"Module not available: {controlnet_module!r}; available: "
                                     f"{', '.join(service.preprocessors.names())}")
        inputs = controlnet_input_images or controlnet_images
        if not inputs:
            raise HTTPException(422, "No image selected")
        unit = ControlNetUnit(module=preprocessor.name, processor_res=controlnet_processor_res,
                              threshold_a=controlnet_threshold_a,
                              threshold_b=controlnet_threshold_b)
        images, messages, poses = [], [], []
        for encoded in inputs:
            try:
                image = to_image(encoded, "image")
            except UnitError as error:
                raise HTTPException(422, str(error)) from error
            if image is None:
                raise HTTPException(422, "an input image is empty")
            try:
                result = detect(unit, image, service.preprocessors, width=image.width,
                                height=image.height)
            except UnitError as error:
                raise HTTPException(422, str(error)) from error
            images.append(encode_image_to_base64(Image.fromarray(np.asarray(result.image))))
            if result.message:
                messages.append(result.message)
            if result.pose is not None:
                poses.append(result.pose)
        answer: dict[str, Any] = {"images": images, "info": "; ".join(messages) or "Success"}
        if poses:
            answer["poses"] = poses
        return answer

    @router.post("/render_openpose_json")
    def render_openpose_json(pose_data: list[dict[str, Any]] = Body([])) -> dict[str, Any]:
        """OpenPose JSON (as /detect returns it, maybe edited) → pose maps to use as a unit's
        image with module "none": a pose without a photo."""
        if not pose_data:
            return {"info": "No pose data detected."}
        images = []
        for index, data in enumerate(pose_data):
            try:
                pose, width, height = pose_from_json(data)
                drawn = draw_pose(pose, width, height)
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
                raise HTTPException(422, f"pose {index} is not OpenPose JSON ({error})") from error
            images.append(encode_image_to_base64(Image.fromarray(drawn)))
        return {"images": images, "info": "Success"}

    return router
