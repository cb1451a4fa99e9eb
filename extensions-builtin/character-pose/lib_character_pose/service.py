"""The character-pose service: characters made with txt2img and kept with everything needed to
draw them again, re-drawn from their own seed with ControlNet units that carry a pose (openpose)
and / or the depth of a reference image. It talks to the app only through its public HTTP API
(`client.AppClient`): /sdapi/v1/txt2img with the ControlNet unit in `alwayson_scripts`, and
/controlnet/* for pose detection and rendering."""
from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lib_character_pose.client import ApiCallError, AppClient
from lib_character_pose.poses import PoseError, Preset, checked_keypoints
from lib_character_pose.store import Character, CharacterStore, Render, UserPose, new_id, now

#: the txt2img fields a character keeps (and is re-drawn with)
CHARACTER_FIELDS = ("prompt", "negative_prompt", "seed", "width", "height", "steps",
                    "sampler_name", "scheduler", "cfg_scale")
CONTROLS = ("openpose", "depth", "both")
NO_PERSON = "no person found"
BATCH_SCRIPT = "character pose batch"      # the selectable script that runs a batch job
BLEND_NAME = "anime-blend-7-3"
FOLLOW_SECONDS = 0.5                       # how often a remote batch's job is looked at

log = logging.getLogger(__name__)


#: the largest seed a character keeps (the store's SQLite INTEGER is a signed 64-bit number)
MAX_SEED = 2 ** 63 - 1


class ServiceError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def not_found(what: str, ident: str) -> ServiceError:
    return ServiceError(404, f"{what} {ident!r} not found")


def decode_image(value: str, field: str) -> str:
    """A base64 image (data URL or plain) checked to decode; returned as plain base64."""
    text = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError(422, f"{field} is not base64 image data") from None
    if not data:
        raise ServiceError(422, f"{field} is empty")
    return text


@dataclass
class ServiceSettings:
    checkpoint: str = BLEND_NAME        # the character checkpoint by default (title or name)
    openpose_model: str = "auto"        # a ControlNet model name, or "auto" (by control type)
    depth_model: str = "auto"
    depth_module: str = "depth_anything_v2"
    #: jobs run on workers behind a Redis queue (--queue): batches, which store each image as
    #: it is made, need the service's own process
    remote_workers: bool = False


@dataclass
class BatchItem:
    pose_id: str
    units: list[dict[str, Any]]
    settings: dict[str, Any]


@dataclass
class Batch:
    character: Character
    control: str
    items: list[BatchItem]


class BatchRegistry:
    """Batches queued as jobs, by an unguessable token the job carries (so the batch script
    only runs what the service queued, for the owner who asked)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: dict[str, Batch] = {}

    def add(self, batch: Batch) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._batches[token] = batch
        return token

    def take(self, token: str) -> Batch | None:
        with self._lock:
            return self._batches.pop(token, None)


@dataclass
class ControlChoice:
    model: str
    module: str                         # what the unit runs on its image
    fallback: bool                      # no model of the wanted type: another one stands in


class CharacterService:
    def __init__(self, store: CharacterStore, presets: dict[str, Preset],
                 settings: Callable[[], ServiceSettings]) -> None:
        self.store = store
        self.presets = presets
        self.settings = settings
        self.batches = BatchRegistry()
        self._followers: set[asyncio.Task] = set()     # kept, so they are not collected

    # -- checkpoints and models ----------------------------------------------------------------
    async def checkpoint(self, client: AppClient, wanted: str | None) -> dict[str, Any]:
        """The sd-models entry for `wanted` (title, name or file stem), the configured blend by
        default; without the blend, the checkpoint in use (on a fresh install: the demo)."""
        models = await client.get("/sdapi/v1/sd-models")
        name = wanted or self.settings().checkpoint
        for model in models:
            if name in (model["title"], model["model_name"], Path(model["filename"]).stem):
                return model
        if wanted:
            raise ServiceError(404, f"checkpoint {wanted!r} not found; available: "
                                    f"{', '.join(m['model_name'] for m in models)}")
        options = await client.get("/sdapi/v1/options")
        current = options.get("sd_model_checkpoint")
        return next((m for m in models if m["title"] == current), models[0]) if models else {}

    async def blend_status(self, client: AppClient) -> dict[str, Any]:
        name = self.settings().checkpoint
        models = await client.get("/sdapi/v1/sd-models")
        present = any(name in (m["model_name"], m["title"]) for m in models)
        return {"checkpoint": name, "present": present,
                "how_to_build": None if present else (
                    "Put the anime base checkpoint and the second checkpoint in "
                    "models/Stable-diffusion as anime-base.safetensors and second.safetensors, "
                    "then run: python -m modules.merger recipes/anime-blend-7-3.json "
                    "(0.7 base + 0.3 second, weighted sum). Until then characters use the "
                    "checkpoint in use.")}

    async def control_model(self, client: AppClient, kind: str) -> ControlChoice:
        """The ControlNet for "openpose" / "depth": the setting's, else the first model of that
        control type, else (a fresh install) the first usable model, run with its type's
        default preprocessor on the map."""
        settings = self.settings()
        chosen = settings.openpose_model if kind == "openpose" else settings.depth_model
        names = (await client.get("/controlnet/model_list"))["model_list"]
        if chosen != "auto":
            if chosen not in names:
                raise ServiceError(422, f"the configured {kind} ControlNet {chosen!r} is not "
                                        f"installed; available: {', '.join(names) or 'none'}")
            return ControlChoice(chosen, self._module_for(kind), False)
        types = (await client.get("/controlnet/control_types"))["control_types"]
        wanted = types.get("OpenPose" if kind == "openpose" else "Depth", {})
        of_type = [name for name in wanted.get("model_list", []) if name != "None"]
        if of_type:
            return ControlChoice(of_type[0], self._module_for(kind), False)
        for type_name, entry in types.items():
            usable = [name for name in entry.get("model_list", []) if name != "None"]
            if type_name != "All" and usable:
                return ControlChoice(usable[0], entry.get("default_option") or "none", True)
        raise ServiceError(422, "no ControlNet model is installed: put one in "
                                "models/ControlNet")

    def _module_for(self, kind: str) -> str:
        # a pose arrives as a rendered skeleton already; depth runs on the reference photo
        return "none" if kind == "openpose" else self.settings().depth_module

    # -- poses ---------------------------------------------------------------------------------
    def find_pose(self, owner: str, pose_id: str) -> dict[str, Any]:
        if pose_id in self.presets:
            return self.presets[pose_id].keypoints
        pose = self.store.pose(owner, pose_id)
        if pose is None:
            raise not_found("pose", pose_id)
        return pose.keypoints

    async def pose_from_photo(self, client: AppClient, photo: str) -> dict[str, Any]:
        answer = await client.post("/controlnet/detect", {
            "controlnet_module": "openpose", "controlnet_input_images": [photo],
            "controlnet_processor_res": 512})
        poses = answer.get("poses") or []
        if not poses or not poses[0].get("people"):
            raise ServiceError(422, f"{NO_PERSON} in the photo")
        return checked_keypoints(poses[0])

    async def render_pose(self, client: AppClient, keypoints: dict[str, Any]) -> str:
        # sd-webui-controlnet's route takes the list of poses as the whole body
        answer = await client.post("/controlnet/render_openpose_json", [keypoints])
        return answer["images"][0]

    async def add_pose(self, client: AppClient, owner: str, name: str, *,
                       keypoints: dict[str, Any] | None = None, photo: str | None = None,
                       keep_photo: bool = False) -> UserPose:
        if (keypoints is None) == (photo is None):
            raise ServiceError(422, "send either keypoints or a photo")
        if photo is not None:
            photo = decode_image(photo, "photo")
            keypoints = await self.pose_from_photo(client, photo)
        else:
            keypoints = checked(keypoints)
        pose = UserPose(new_id(), owner, name or "pose", now(), keypoints)
        return self.store.add_pose(pose, base64.b64decode(photo) if keep_photo and photo
                                   else None)

    # -- characters ----------------------------------------------------------------------------
    async def create_character(self, client: AppClient, owner: str, name: str,
                               fields: dict[str, Any], checkpoint: str | None) -> Character:
        model = await self.checkpoint(client, checkpoint)
        answer = await client.post("/sdapi/v1/txt2img", {
            **fields, "batch_size": 1, "n_iter": 1, "send_images": True, "save_images": False,
            "override_settings": {"sd_model_checkpoint": model.get("title")}})
        info = json.loads(answer["info"])
        parameters = {**fields, "seed": int(info["seed"])}
        # the listing's hash is known only once the file was hashed: the job's then
        checkpoint_hash = model.get("sha256") or info.get("sd_model_hash") or ""
        character = Character(new_id(), owner, name or fields["prompt"][:48], now(), parameters,
                              int(info["seed"]), model.get("title", ""), checkpoint_hash,
                              info["infotexts"][0], "")
        return self.store.add_character(character, base64.b64decode(answer["images"][0]))

    async def create_from_image(self, client: AppClient, owner: str, name: str,
                                image: str) -> Character:
        """A character from an image's A1111 infotext; the image is its first image."""
        image = decode_image(image, "image")
        answer = await client.post("/sdapi/v1/png-info", {"image": image})
        params = answer.get("parameters") or {}
        if not answer.get("info") or "Prompt" not in params:
            raise ServiceError(422, "the image carries no A1111 generation parameters")
        if "Seed" not in params:
            raise ServiceError(422, "the image's parameters have no seed")
        if not -1 <= int(params["Seed"]) <= MAX_SEED:
            raise ServiceError(422, f"the image's seed {params['Seed']} is outside -1 .. "
                                    f"{MAX_SEED}")
        fields = {"prompt": params["Prompt"],
                  "negative_prompt": params.get("Negative prompt", ""),
                  "seed": int(params["Seed"]), "width": int(params.get("Size-1", 512)),
                  "height": int(params.get("Size-2", 512)), "steps": int(params.get("Steps", 20)),
                  "sampler_name": params.get("Sampler", "Euler a"),
                  "scheduler": params.get("Schedule type", "Automatic"),
                  "cfg_scale": float(params.get("CFG scale", 7.0))}
        models = await client.get("/sdapi/v1/sd-models")
        wanted = (params.get("Model"), params.get("Model hash"))
        model = next((m for m in models if m["model_name"] == wanted[0]
                      or (wanted[1] and m.get("hash") == wanted[1])), None)
        if model is None:
            model = await self.checkpoint(client, None)
        character = Character(new_id(), owner, name or fields["prompt"][:48], now(), fields,
                              fields["seed"], model.get("title", ""),
                              model.get("sha256") or model.get("hash") or "", answer["info"], "")
        return self.store.add_character(character, as_png(base64.b64decode(image)))

    def character(self, owner: str, character_id: str) -> Character:
        character = self.store.character(owner, character_id)
        if character is None:
            raise not_found("character", character_id)
        return character

    async def control_units(self, client: AppClient, owner: str, *, control: str,
                            pose_id: str | None = None, keypoints: dict[str, Any] | None = None,
                            photo: str | None = None, reference_image: str | None = None,
                            weight: float = 1.0, guidance_start: float = 0.0,
                            guidance_end: float = 1.0) -> tuple[list[dict], dict[str, Any]]:
        """The ControlNet units (sd-webui-controlnet's payload) for a re-pose, and the settings
        recorded with it."""
        if control not in CONTROLS:
            raise ServiceError(422, f"control must be one of {', '.join(CONTROLS)}")
        window = {"weight": weight, "guidance_start": guidance_start,
                  "guidance_end": guidance_end}
        units, used = [], {}
        if control in ("openpose", "both"):
            given = [value for value in (pose_id, keypoints, photo) if value is not None]
            if len(given) != 1:
                raise ServiceError(422, "give the pose as one of pose_id, keypoints or photo")
            if pose_id is not None:
                pose = self.find_pose(owner, pose_id)
            elif keypoints is not None:
                pose = checked(keypoints)
            else:
                pose = await self.pose_from_photo(client, decode_image(photo, "photo"))
            choice = await self.control_model(client, "openpose")
            units.append(_unit(choice, await self.render_pose(client, pose), window))
            used["openpose"] = choice.__dict__
        if control in ("depth", "both"):
            if reference_image is None:
                raise ServiceError(422, "depth needs reference_image (base64)")
            choice = await self.control_model(client, "depth")
            units.append(_unit(choice, decode_image(reference_image, "reference_image"), window))
            used["depth"] = choice.__dict__
        return units, {**window, "controlnets": used}

    async def repose(self, client: AppClient, owner: str, character_id: str, *,
                     control: str = "openpose", pose_id: str | None = None,
                     **unit_fields: Any) -> tuple[Render, str]:
        """The character drawn again (its parameters and seed) with the control unit(s);
        returns the stored render and the image (base64 PNG)."""
        character = self.character(owner, character_id)
        units, settings = await self.control_units(client, owner, control=control,
                                                   pose_id=pose_id, **unit_fields)
        answer = await client.post("/sdapi/v1/txt2img", {
            **redraw_request(character), "save_images": False,
            "alwayson_scripts": {"controlnet": {"args": units}}})
        info = json.loads(answer["info"])
        image = answer["images"][0]
        return self.record_render(character, pose_id, control, settings, int(info["seed"]),
                                  info["infotexts"][0], image), image

    def record_render(self, character: Character, pose_id: str | None, control: str,
                      settings: dict[str, Any], seed: int, infotext: str, image: str) -> Render:
        render = Render(new_id(), character.id, now(), pose_id, control, settings, seed,
                        infotext, "")
        return self.store.add_render(render, base64.b64decode(image))

    async def queue_batch(self, client: AppClient, owner: str, character_id: str,
                          pose_ids: list[str], control: str = "openpose",
                          follower: Callable[[], AppClient] | None = None,
                          **unit_fields: Any) -> dict[str, Any]:
        """One txt2img job (/sdapi/v2/jobs) that draws the character in every pose; the batch
        script (`scripts/character_pose.py`) runs it and stores each image in the history.
        With remote workers (--queue) the job carries the poses themselves and this process
        stores the images when the job is done (`follower` makes the client that watches it)."""
        character = self.character(owner, character_id)
        if not pose_ids:
            raise ServiceError(422, "pose_ids is empty")

        items = []
        for pose_id in pose_ids:
            units, settings = await self.control_units(client, owner, control=control,
                                                       pose_id=pose_id, **unit_fields)
            items.append(BatchItem(pose_id, units, settings))
        batch = Batch(character, control, items)
        if self.settings().remote_workers:
            status = await self._queue_remote_batch(client, batch, follower)
        else:
            token = self.batches.add(batch)
            try:
                status = await client.post("/sdapi/v2/jobs", {"type": "txt2img", "request": {
                    **redraw_request(character), "save_images": False,
                    "script_name": BATCH_SCRIPT, "script_args": [token]}})
            except BaseException:
                self.batches.take(token)        # refused (queue full …): nothing will run it
                raise
        return {"job_id": status["id"], "status_url": f"/sdapi/v2/jobs/{status['id']}",
                "poses": pose_ids}


    async def _queue_remote_batch(self, client: AppClient, batch: Batch,
                                  follower: Callable[[], AppClient] | None) -> dict[str, Any]:
        # the worker only draws (it has no store): the poses travel in the job, and the images
        # are recorded here from the job's result
        inline = json.dumps({"items": [{"pose_id": item.pose_id, "units": item.units}
                                       for item in batch.items]})
        status = await client.post("/sdapi/v2/jobs", {"type": "txt2img", "request": {
            **redraw_request(batch.character), "save_images": False,
            "script_name": BATCH_SCRIPT, "script_args": [inline]}})
        if follower is not None:
            task = asyncio.get_running_loop().create_task(
                self._record_when_done(follower, status["id"], batch))
            self._followers.add(task)
            task.add_done_callback(self._followers.discard)
        return status

    async def _record_when_done(self, follower: Callable[[], AppClient], job_id: str,
                                batch: Batch) -> None:
        try:
            async with follower() as api:
                while (status := await api.get(f"/sdapi/v2/jobs/{job_id}"))["state"] in (
                        "queued", "running"):
                    await asyncio.sleep(FOLLOW_SECONDS)
            if status["state"] != "done":
                return
            result = status["result"]
            info = json.loads(result["info"])
            for item, image, infotext, seed in zip(batch.items, result["images"],
                                                   info["infotexts"], info["all_seeds"]):
                self.record_render(batch.character, item.pose_id, batch.control,
                                   item.settings, seed, infotext, image)
        except Exception:  # noqa: BLE001 - the job's own status tells the client what happened
            log.exception("character-pose: the images of batch %s were not stored", job_id)


def as_png(data: bytes) -> bytes:
    """Image bytes of any format PIL reads, as PNG (without the source's metadata)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
    except (UnidentifiedImageError, OSError) as error:
        raise ServiceError(422, f"image is not a readable image ({error})") from error
    return buffer.getvalue()


def redraw_request(character: Character) -> dict[str, Any]:
    """The txt2img request that draws `character` again: its fields, seed and checkpoint."""
    return {**{key: character.parameters[key] for key in CHARACTER_FIELDS
               if key in character.parameters},
            "seed": character.seed, "batch_size": 1, "n_iter": 1,
            "override_settings": {"sd_model_checkpoint": character.checkpoint}}


def checked(keypoints: Any) -> dict[str, Any]:
    try:
        return checked_keypoints(keypoints)
    except PoseError as error:
        raise ServiceError(422, f"malformed keypoints: {error}") from error


def _unit(choice: ControlChoice, image: str, window: dict[str, float]) -> dict[str, Any]:
    # pixel perfect: the map is detected at the generation's size, so thin edge maps keep
    # their strength (a 512 px canny map shrunk to a small image nearly vanishes)
    return {"enabled": True, "module": choice.module, "model": choice.model, "image": image,
            "resize_mode": "Resize and Fill", "processor_res": 512, "pixel_perfect": True,
            "control_mode": "Balanced", **window}


__all__ = ["ApiCallError", "CharacterService", "ServiceError", "ServiceSettings"]
