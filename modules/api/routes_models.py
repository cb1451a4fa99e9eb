"""Model listings and model-side actions of /sdapi/v1 (a1111-compat.md §2, §4.8): sd-vae,
hypernetworks, face-restorers, realesrgan-models, prompt-styles, embeddings, loras, the refresh
routes, memory, unload-/reload-checkpoint, scripts, script-info and extensions.

Every listing answers from the registry or folder its feature reads, so an empty list is the true
answer until that feature's files exist; nothing is listed that the app could not use or describe.
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import torch
from fastapi import APIRouter

from modules.api.models import (EmbeddingItem, EmbeddingsResponse, ExtensionItem, FaceRestorerItem,
                                HypernetworkItem, LoraItem, MemoryResponse, PromptStyleItem,
                                RealesrganItem, ScriptArg, ScriptInfo, ScriptsList, SDVaeItem)
from modules.engine.checkpoint_io import CheckpointLoadError, read_safetensors_metadata
from modules.processing.textual_inversion import model_encoders
from modules.processing.upscalers import UpscalerInfo
from modules.scripting.extension_git import git_info

if TYPE_CHECKING:
    from modules.app.context import AppContext
    from modules.jobs.progress import JobProgress

log = logging.getLogger(__name__)

HYPERNETWORK_EXTENSIONS = (".pt",)                       # A1111 lists **/*.pt
LORA_EXTENSIONS = (".pt", ".ckpt", ".safetensors")       # the Lora built-in extension's list


def _natural_key(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def script_info(script: Any, runner: Any) -> ScriptInfo:
    runner.default_args()           # fills each script's controls
    args = []
    for control in script.controls or []:
        choices = getattr(control, "choices", None)
        args.append(ScriptArg(
            label=getattr(control, "label", None), value=getattr(control, "value", None),
            minimum=getattr(control, "minimum", None), maximum=getattr(control, "maximum", None),
            step=getattr(control, "step", None),
            choices=[choice[0] if isinstance(choice, (tuple, list)) else str(choice)
                     for choice in choices] if choices else None))
    return ScriptInfo(name=script.name, is_alwayson=script.alwayson,
                      is_img2img=script.is_img2img, args=args)


def scan_model_files(directory: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Files with `extensions` under `directory` (recursively), in natural name order."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [path for path in directory.rglob("*")
             if path.is_file() and path.suffix.lower() in extensions]
    return sorted(found, key=lambda path: _natural_key(str(path.relative_to(directory))))


def list_hypernetworks(directory: Path) -> list[HypernetworkItem]:
    """A1111's `list_hypernetworks`: name = file stem, path = the absolute file."""
    return [HypernetworkItem(name=path.stem, path=str(path.absolute()))
            for path in scan_model_files(directory, HYPERNETWORK_EXTENSIONS)]


def safetensors_metadata(path: Path) -> dict[str, Any]:
    """A1111's `read_metadata_from_safetensors`: the header's strings, JSON values parsed."""
    try:
        raw = read_safetensors_metadata(path)
    except CheckpointLoadError as error:
        log.warning("%s", error)
        return {}
    metadata: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str) and value.startswith("{"):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        metadata[key] = value
    return metadata


def list_loras(directory: Path) -> list[LoraItem]:
    """The Lora extension's listing: alias = the training metadata's `ss_output_name` when present
    (A1111's default "Alias from file"), else the file name."""
    items = []
    for path in scan_model_files(directory, LORA_EXTENSIONS):
        metadata = safetensors_metadata(path)
        alias = metadata.get("ss_output_name") or path.stem
        items.append(LoraItem(name=path.stem, alias=str(alias), path=str(path.absolute()),
                              metadata=metadata))
    return items


def is_realesrgan(upscaler: UpscalerInfo) -> bool:
    """A1111 names its RealESRGAN upscalers "R-ESRGAN …"; model files are "RealESRGAN_…"."""
    described = f"{upscaler.model_name or ''} {upscaler.model_path or ''}".lower()
    return upscaler.name.startswith("R-ESRGAN") or "realesrgan" in described


def memory_stats() -> MemoryResponse:
    """A1111's /memory: RAM of this process against the machine, CUDA allocator statistics."""
    try:
        process = psutil.Process(os.getpid())
        used = process.memory_info().rss
        total = psutil.virtual_memory().total
        ram: dict[str, Any] = {"free": total - used, "used": used, "total": total}
    except Exception as error:  # noqa: BLE001 - reported in the response, as A1111 does
        ram = {"error": str(error)}
    try:
        cuda = cuda_memory_stats() if torch.cuda.is_available() else {"error": "unavailable"}
    except Exception as error:  # noqa: BLE001
        cuda = {"error": str(error)}
    return MemoryResponse(ram=ram, cuda=cuda)


def cuda_memory_stats() -> dict[str, Any]:
    free, total = torch.cuda.mem_get_info()
    stats = torch.cuda.memory_stats()

    def current_and_peak(name: str) -> dict[str, int]:
        return {"current": stats.get(f"{name}.all.current", 0),
                "peak": stats.get(f"{name}.all.peak", 0)}

    return {
        "system": {"free": free, "used": total - free, "total": total},
        "active": current_and_peak("active_bytes"),
        "allocated": current_and_peak("allocated_bytes"),
        "reserved": current_and_peak("reserved_bytes"),
        "inactive": current_and_peak("inactive_split_bytes"),
        "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)},
    }


def models_router(ctx: "AppContext") -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1")

    @router.get("/sd-vae", response_model=list[SDVaeItem], tags=["models"])
    def get_sd_vaes() -> list[SDVaeItem]:
        return [SDVaeItem(model_name=vae.model_name, filename=vae.filename)
                for vae in ctx.vaes.list()]

    @router.post("/refresh-vae", tags=["models"])
    def refresh_vae() -> None:
        ctx.vaes.refresh()

    @router.get("/hypernetworks", response_model=list[HypernetworkItem], tags=["models"])
    def get_hypernetworks() -> list[HypernetworkItem]:
        return list_hypernetworks(ctx.paths.hypernetwork_dir)

    @router.get("/loras", response_model=list[LoraItem], tags=["models"])
    def get_loras() -> list[LoraItem]:
        return list_loras(ctx.paths.lora_dir)

    @router.post("/refresh-loras", tags=["models"])
    def refresh_loras() -> None:
        """The listing reads the folder on every call; jobs find files added since the last
        refresh too (their list is read again)."""
        if getattr(ctx, "loras", None) is not None:
            ctx.loras.refresh()

    @router.get("/face-restorers", response_model=list[FaceRestorerItem], tags=["models"])
    def get_face_restorers() -> list[FaceRestorerItem]:
        restorers = ctx.face_restorers
        return [FaceRestorerItem(name=name, cmd_dir=str(restorers.folders[name]))
                for name in restorers.installed()]

    @router.get("/realesrgan-models", response_model=list[RealesrganItem], tags=["models"])
    def get_realesrgan_models() -> list[RealesrganItem]:
        return [RealesrganItem(name=upscaler.name, path=upscaler.model_path,
                               scale=upscaler.scale)
                for upscaler in ctx.upscalers.list() if is_realesrgan(upscaler)]

    @router.get("/prompt-styles", response_model=list[PromptStyleItem], tags=["models"])
    def get_prompt_styles() -> list[PromptStyleItem]:
        styles = (ctx.styles.get(name) for name in ctx.styles.names())
        return [PromptStyleItem(name=style.name, prompt=style.prompt,
                                negative_prompt=style.negative_prompt)
                for style in styles if style is not None]

    @router.get("/embeddings", response_model=EmbeddingsResponse, tags=["models"])
    def get_embeddings() -> EmbeddingsResponse:
        """The embeddings/ folder sorted for the loaded model (before any load, as in
        A1111's: every readable file counts as loaded until a model is)."""
        if ctx.embeddings is None:
            return EmbeddingsResponse(loaded={}, skipped={})
        current = ctx.model_manager.current()
        sets = ctx.embeddings.sets_for(model_encoders(current.model) if current else [])

        def item(embedding) -> EmbeddingItem:
            return EmbeddingItem(step=embedding.step, sd_checkpoint=embedding.sd_checkpoint,
                                 sd_checkpoint_name=embedding.sd_checkpoint_name,
                                 shape=embedding.shape, vectors=embedding.count)
        return EmbeddingsResponse(
            loaded={name: item(e) for name, e in sets.loaded.items()},
            skipped={name: item(e) for name, e in sets.skipped.items()})

    @router.post("/refresh-embeddings", tags=["models"])
    def refresh_embeddings() -> None:
        """Read every embedding file again (jobs notice new and changed files on their own)."""
        if ctx.embeddings is not None:
            ctx.embeddings.refresh()

    @router.get("/memory", response_model=MemoryResponse, tags=["system"])
    def get_memory() -> MemoryResponse:
        return memory_stats()

    @router.post("/unload-checkpoint", tags=["models"])
    def unloadapi() -> dict:
        # on the job worker: never under a running generation
        ctx.jobs.run("unload_model", lambda progress: ctx.model_manager.unload_to_cpu())
        return {}

    @router.post("/reload-checkpoint", tags=["models"])
    def reloadapi() -> dict:
        def reload(progress: "JobProgress") -> None:
            # nothing returned: a finished job's result must never keep a model alive
            ctx.model_manager.reload_to_device()

        ctx.jobs.run("reload_model", reload)
        return {}

    @router.get("/scripts", response_model=ScriptsList, tags=["scripts"])
    def get_scripts_list() -> ScriptsList:
        """Every script of each tab, always-on ones too, by name (A1111: lower-case titles;
        clients test for an extension this way, e.g. webuiapi for "adetailer")."""
        return ScriptsList(txt2img=[script.name for script in ctx.scripts.txt2img.scripts],
                           img2img=[script.name for script in ctx.scripts.img2img.scripts])

    @router.get("/script-info", response_model=list[ScriptInfo], tags=["scripts"])
    def get_script_info() -> list[ScriptInfo]:
        """Every script of both tabs with its arguments (label, default, range, choices), so a
        client can build `script_args` / `alwayson_scripts` arrays."""
        return [script_info(script, runner) for runner in (ctx.scripts.txt2img,
                                                           ctx.scripts.img2img)
                for script in runner.scripts]

    @router.get("/extensions", response_model=list[ExtensionItem], tags=["extensions"])
    def get_extensions_list() -> list[ExtensionItem]:
        """The extension folders that are git checkouts (A1111 lists only those)."""
        items = []
        for extension in ctx.scripts.extensions:
            info = git_info(extension.path)
            if info is not None:
                items.append(ExtensionItem(
                    name=extension.name, remote=info.remote, branch=info.branch,
                    commit_hash=info.commit_hash, version=info.version,
                    commit_date=info.commit_date, enabled=extension.enabled))
        return items

    return router
