"""/character-pose/v1: the service's HTTP routes (Swagger under the "Character pose" tag, each
with a description and an example). The owner of what a request touches is its --api-auth user
("" without auth): another user's character or pose is a 404."""
from __future__ import annotations

import base64
import binascii
from typing import Any, Callable

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from lib_character_pose.client import ApiCallError, AppClient
from lib_character_pose.service import CONTROLS, MAX_SEED, CharacterService, ServiceError
from lib_character_pose.store import Character, Render, UserPose

PREFIX = "/character-pose/v1"
TAG = "Character pose"
POSE_EXAMPLE = {"canvas_width": 512, "canvas_height": 768, "people": [{"pose_keypoints_2d": [
    256, 163, 1, 256, 215, 1, 214, 215, 1, 203, 292, 1, 198, 364, 1, 298, 215, 1, 309, 292, 1,
    314, 364, 1, 228, 420, 1, 222, 532, 1, 222, 640, 1, 284, 420, 1, 290, 532, 1, 290, 640, 1,
    245, 155, 1, 267, 155, 1, 232, 161, 1, 280, 161, 1]}]}


class CharacterCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "Red-haired knight", "prompt": "1girl, red hair, silver armor, full body",
        "negative_prompt": "lowres, bad anatomy", "seed": -1, "width": 512, "height": 768,
        "steps": 20, "sampler_name": "Euler a", "cfg_scale": 7}]})
    name: str = Field("", description="a label (default: the prompt's start)")
    prompt: str = Field(..., min_length=1)
    negative_prompt: str = ""
    seed: int = Field(-1, ge=-1, le=MAX_SEED,
                      description="-1: a random seed, kept with the character")
    width: int = Field(512, ge=64, le=2048)
    height: int = Field(512, ge=64, le=2048)
    steps: int = Field(20, ge=1, le=150)
    sampler_name: str = "Euler a"
    scheduler: str = "Automatic"
    cfg_scale: float = Field(7.0, ge=1, le=30)
    checkpoint: str | None = Field(None, description="title or name; default: the service's "
                                                     "blend (the checkpoint in use without it)")


class CharacterFromImage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "from my PNG", "image": "<base64 PNG with A1111 parameters>"}]})
    name: str = ""
    image: str = Field(..., description="base64 PNG / JPEG / WEBP carrying A1111 infotext")


class CharacterOut(BaseModel):
    id: str
    name: str
    created: float
    parameters: dict[str, Any]
    seed: int
    checkpoint: str
    checkpoint_hash: str
    infotext: str
    image_url: str


class ReposeRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"control": "openpose", "pose_id": "running", "weight": 1.0},
        {"control": "both", "pose_id": "waving", "reference_image": "<base64 photo>",
         "guidance_end": 0.8}]})
    control: str = Field("openpose", description=f"one of {', '.join(CONTROLS)}")
    pose_id: str | None = Field(None, description="a preset or one of your poses")
    keypoints: dict[str, Any] | None = Field(None, description="OpenPose JSON instead of an id")
    photo: str | None = Field(None, description="base64 photo of a person instead of an id")
    reference_image: str | None = Field(None, description="base64 image whose depth to follow "
                                                          "(control depth / both)")
    weight: float = Field(1.0, ge=0, le=2)
    guidance_start: float = Field(0.0, ge=0, le=1)
    guidance_end: float = Field(1.0, ge=0, le=1)


class BatchRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"pose_ids": ["standing", "walking", "running", "jumping"], "weight": 1.0}]})
    pose_ids: list[str] = Field(..., min_length=1, max_length=64)
    control: str = Field("openpose", description=f"one of {', '.join(CONTROLS)}")
    reference_image: str | None = Field(None, description="for depth / both: base64 image")
    weight: float = Field(1.0, ge=0, le=2)
    guidance_start: float = Field(0.0, ge=0, le=1)
    guidance_end: float = Field(1.0, ge=0, le=1)


class BatchOut(BaseModel):
    job_id: str
    status_url: str = Field(..., description="GET it for state, progress and, when done, the "
                                             "images (a /sdapi/v2 job)")
    poses: list[str]


class RenderOut(BaseModel):
    id: str
    character_id: str
    created: float
    pose_id: str | None
    control: str
    settings: dict[str, Any]
    seed: int
    infotext: str
    image_url: str
    image: str | None = Field(None, description="base64 PNG (in the re-pose answer)")


class PoseCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "my standing pose", "keypoints": POSE_EXAMPLE},
        {"name": "from a photo", "photo": "<base64 photo of a person>", "keep_photo": False}]})
    name: str = ""
    keypoints: dict[str, Any] | None = Field(None, description="OpenPose JSON")
    photo: str | None = Field(None, description="base64 photo: the pose is detected in it")
    keep_photo: bool = Field(False, description="store the photo with the pose")


class PoseOut(BaseModel):
    id: str
    name: str
    builtin: bool
    keypoints: dict[str, Any]
    preview_url: str


def owner_of(request: Request) -> str:
    """The --api-auth user of the request (the middleware has checked the password)."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(token, validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""


def character_out(character: Character) -> CharacterOut:
    return CharacterOut(**{key: getattr(character, key) for key in (
        "id", "name", "created", "parameters", "seed", "checkpoint", "checkpoint_hash",
        "infotext")}, image_url=f"{PREFIX}/characters/{character.id}/image")


def render_out(render: Render, image: str | None = None) -> RenderOut:
    return RenderOut(**{key: getattr(render, key) for key in (
        "id", "character_id", "created", "pose_id", "control", "settings", "seed", "infotext")},
        image_url=f"{PREFIX}/characters/{render.character_id}/history/{render.id}/image",
        image=image)


def pose_out(pose_id: str, name: str, keypoints: dict[str, Any], builtin: bool) -> PoseOut:
    return PoseOut(id=pose_id, name=name, builtin=builtin, keypoints=keypoints,
                   preview_url=f"{PREFIX}/poses/{pose_id}/preview")


def service_router(service: CharacterService, app_for_calls: Callable[[], Any]) -> APIRouter:
    # the examples in the descriptions use $S=http://127.0.0.1:7861/character-pose/v1
    router = APIRouter(prefix=PREFIX, tags=[TAG])

    def client(request: Request) -> AppClient:
        return AppClient(app_for_calls(), request.headers.get("authorization"))

    async def guarded(call):
        try:
            return await call
        except ServiceError as error:
            raise HTTPException(error.status, error.message) from error
        except ApiCallError as error:
            raise HTTPException(error.status, error.detail) from error

    @router.get("/status", summary="The service's checkpoint and ControlNets")
    async def status(request: Request) -> dict[str, Any]:
        """Whether the blend checkpoint is installed (and how to build it when not), and the
        ControlNet models the openpose and depth controls use.

        In every example here, $S is http://127.0.0.1:7861/character-pose/v1 (add `-u user:pass`
        with --api-auth).

        Example: `curl $S/status`
        """
        async with client(request) as api:
            async def gather() -> dict[str, Any]:
                answer = {"blend": await service.blend_status(api)}
                for kind in ("openpose", "depth"):
                    try:
                        answer[kind] = (await service.control_model(api, kind)).__dict__
                    except ServiceError as error:
                        answer[kind] = {"error": error.message}
                return answer
            return await guarded(gather())

    @router.post("/characters", response_model=CharacterOut, summary="Create a character")
    async def create(body: CharacterCreate, request: Request) -> CharacterOut:
        """txt2img with these parameters; the character keeps them, the resolved seed, the
        checkpoint's title and hash and its first image, so it can be drawn again.

        Example: `curl $S/characters --json '{"prompt": "1girl, red hair", "seed": -1}'`
        """
        fields = body.model_dump(exclude={"name", "checkpoint"})
        async with client(request) as api:
            character = await guarded(service.create_character(
                api, owner_of(request), body.name, fields, body.checkpoint))
        return character_out(character)

    @router.post("/characters/from-image", response_model=CharacterOut,
                 summary="Create a character from an image with A1111 parameters")
    async def create_from_image(body: CharacterFromImage, request: Request) -> CharacterOut:
        """The image's infotext (prompt, seed, size, sampler …) becomes the character; the image
        itself is its first image.

        Example: `curl $S/characters/from-image --json '{"image": "<base64 PNG>"}'`
        """
        async with client(request) as api:
            character = await guarded(service.create_from_image(
                api, owner_of(request), body.name, body.image))
        return character_out(character)

    @router.get("/characters", response_model=list[CharacterOut], summary="Your characters")
    def list_characters(request: Request) -> list[CharacterOut]:
        """Oldest first.

        Example: `curl $S/characters`
        """
        return [character_out(c) for c in service.store.characters(owner_of(request))]

    @router.get("/characters/{character_id}", response_model=CharacterOut,
                summary="One character", responses={404: {"description": "not yours or gone"}})
    def get_character(character_id: str, request: Request) -> CharacterOut:
        """Its parameters, seed, checkpoint and hash, infotext and image URL.

        Example: `curl $S/characters/CHARACTER_ID`
        """
        return character_out(_found(service, owner_of(request), character_id))

    @router.delete("/characters/{character_id}", summary="Delete a character and its history",
                   responses={404: {"description": "not yours or gone"}})
    def delete_character(character_id: str, request: Request) -> dict[str, str]:
        """The character, its history and its images.

        Example: `curl -X DELETE $S/characters/CHARACTER_ID`
        """
        if not service.store.delete_character(owner_of(request), character_id):
            raise HTTPException(404, f"character {character_id!r} not found")
        return {"deleted": character_id}

    @router.get("/characters/{character_id}/image", response_class=FileResponse,
                summary="The character's first image (PNG)")
    def character_image(character_id: str, request: Request) -> FileResponse:
        """The image the character was created with.

        Example: `curl -o first.png $S/characters/CHARACTER_ID/image`
        """
        character = _found(service, owner_of(request), character_id)
        return FileResponse(service.store.file(character.image), media_type="image/png")

    @router.post("/characters/{character_id}/pose", response_model=RenderOut,
                 summary="Re-pose a character",
                 responses={404: {"description": "unknown character or pose"},
                            422: {"description": "malformed keypoints, no person in the photo"}})
    async def repose(character_id: str, body: ReposeRequest, request: Request) -> RenderOut:
        """txt2img with the character's own parameters and seed plus a ControlNet unit: the
        pose (a preset or your pose by id, OpenPose keypoints, or a photo of a person) for
        `openpose`, the depth of `reference_image` for `depth`, both for `both`. The image
        (with its infotext) is returned and kept in the character's history.

        Example: `curl $S/characters/CHARACTER_ID/pose --json '{"pose_id": "running"}'`
        """
        async with client(request) as api:
            render, image = await guarded(service.repose(
                api, owner_of(request), character_id, **body.model_dump()))
        return render_out(render, image)

    @router.post("/characters/{character_id}/poses", response_model=BatchOut, status_code=202,
                 summary="Re-pose a character in many poses as one job",
                 responses={404: {"description": "unknown character or pose"}})
    async def repose_batch(character_id: str, body: BatchRequest,
                           request: Request) -> BatchOut:
        """Queues one txt2img job that draws the character in each pose in turn; follow it
        (progress, ETA, and the images at the end) at `/sdapi/v2/jobs/{job_id}`. Each image is
        added to the character's history as it is made.

        Example: `curl $S/characters/ID/poses --json '{"pose_ids": ["standing", "jumping"]}'`
        """
        async with client(request) as api:
            queued = await guarded(service.queue_batch(
                api, owner_of(request), character_id, follower=lambda: client(request),
                **body.model_dump()))
        return BatchOut(**queued)

    @router.get("/characters/{character_id}/history", response_model=list[RenderOut],
                summary="A character's re-posed images")
    def history(character_id: str, request: Request) -> list[RenderOut]:
        """The re-posed images, oldest first, with their pose, control and infotext.

        Example: `curl $S/characters/CHARACTER_ID/history`
        """
        character = _found(service, owner_of(request), character_id)
        return [render_out(r) for r in service.store.renders(character.id)]

    @router.get("/characters/{character_id}/history/{render_id}/image",
                response_class=FileResponse, summary="One re-posed image (PNG)")
    def render_image(character_id: str, render_id: str, request: Request) -> FileResponse:
        """One image of the history.

        Example: `curl -o redraw.png $S/characters/CHARACTER_ID/history/RENDER_ID/image`
        """
        character = _found(service, owner_of(request), character_id)
        render = service.store.render(character.id, render_id)
        if render is None:
            raise HTTPException(404, f"image {render_id!r} not found")
        return FileResponse(service.store.file(render.image), media_type="image/png")

    @router.get("/poses", response_model=list[PoseOut], summary="Preset poses and yours")
    def list_poses(request: Request) -> list[PoseOut]:
        """The twelve built-in presets, then the poses you added.

        Example: `curl $S/poses`
        """
        presets = [pose_out(p.id, p.name, p.keypoints, True) for p in service.presets.values()]
        mine = [pose_out(p.id, p.name, p.keypoints, False)
                for p in service.store.poses(owner_of(request))]
        return presets + mine

    @router.get("/poses/{pose_id}", response_model=PoseOut, summary="One pose",
                responses={404: {"description": "unknown pose"}})
    def get_pose(pose_id: str, request: Request) -> PoseOut:
        """Its OpenPose keypoints (pixels on its canvas) and preview URL.

        Example: `curl $S/poses/waving`
        """
        return _pose(service, owner_of(request), pose_id)

    @router.get("/poses/{pose_id}/preview", summary="The pose's skeleton (PNG)",
                response_class=FileResponse)
    async def pose_preview(pose_id: str, request: Request) -> Any:
        """The skeleton drawn the OpenPose way.

        Example: `curl -o waving.png $S/poses/waving/preview`
        """
        if pose_id in service.presets:
            return FileResponse(service.presets[pose_id].preview, media_type="image/png")
        pose = _pose(service, owner_of(request), pose_id)
        async with client(request) as api:
            image = await guarded(service.render_pose(api, pose.keypoints))
        return Response(base64.b64decode(image), media_type="image/png")

    @router.post("/poses", response_model=PoseOut, summary="Add a pose",
                 responses={422: {"description": "malformed keypoints, no person found"}})
    async def add_pose(body: PoseCreate, request: Request) -> PoseOut:
        """From OpenPose keypoints, or from a photo of a person (the pose is detected with the
        openpose preprocessor; the photo is stored only with keep_photo).

        Example: `curl $S/poses --json '{"name": "jump", "photo": "<base64 photo>"}'`
        """
        async with client(request) as api:
            pose: UserPose = await guarded(service.add_pose(
                api, owner_of(request), body.name, keypoints=body.keypoints, photo=body.photo,
                keep_photo=body.keep_photo))
        return pose_out(pose.id, pose.name, pose.keypoints, False)

    @router.delete("/poses/{pose_id}", summary="Delete one of your poses",
                   responses={403: {"description": "a built-in preset"},
                              404: {"description": "unknown pose"}})
    def delete_pose(pose_id: str, request: Request) -> dict[str, str]:
        """One of your poses (presets cannot be deleted).

        Example: `curl -X DELETE $S/poses/POSE_ID`
        """
        if pose_id in service.presets:
            raise HTTPException(403, f"{pose_id!r} is a built-in preset and cannot be deleted")
        if not service.store.delete_pose(owner_of(request), pose_id):
            raise HTTPException(404, f"pose {pose_id!r} not found")
        return {"deleted": pose_id}

    return router


def _found(service: CharacterService, owner: str, character_id: str) -> Character:
    character = service.store.character(owner, character_id)
    if character is None:
        raise HTTPException(404, f"character {character_id!r} not found")
    return character


def _pose(service: CharacterService, owner: str, pose_id: str) -> PoseOut:
    if pose_id in service.presets:
        preset = service.presets[pose_id]
        return pose_out(preset.id, preset.name, preset.keypoints, True)
    pose = service.store.pose(owner, pose_id)
    if pose is None:
        raise HTTPException(404, f"pose {pose_id!r} not found")
    return pose_out(pose.id, pose.name, pose.keypoints, False)
