"""Face restoration for generation (A1111's `restore_faces` / `face_restoration` setting) and for
Extras: CodeFormer and GFPGAN weights the user puts in models/Codeformer and models/GFPGAN (or the
--codeformer-models-path / --gfpgan-models-path folders), loaded through spandrel, run on every
face `engine.face_restore` finds. One network stays loaded (A1111 keeps both; they are large).
A request that asks for a restorer whose weights are absent is refused before any work, with a
message that names the folder.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import torch
from PIL import Image

from modules.engine.face_restore import (FaceRestorationNet, RestoredImage,
                                         load_face_restoration_net, restore_image_faces)
from modules.engine.upscaler_models import UpscalerModelError
from modules.processing.context import UnsupportedRequestError

if TYPE_CHECKING:
    from modules.processing.context import ProcessingContext

CODEFORMER, GFPGAN = "CodeFormer", "GFPGAN"
WEIGHT_SUFFIXES = (".pth", ".safetensors", ".pt")
NO_FACE_NOTE = "no face found in the image; it is unchanged"


def not_installed_message(folders: Mapping[str, Path]) -> str:
    places = " or ".join(str(folder) for folder in folders.values())
    return ("Face restoration is not available: no face restorer is installed (put CodeFormer "
            f"or GFPGAN weights, e.g. codeformer-v0.1.0.pth or GFPGANv1.4.pth, in {places})")


class FaceRestorer:
    """A loaded restorer. `restore` returns the image with its faces restored (same size) and
    how many faces it found."""

    def __init__(self, name: str, path: Path, net: FaceRestorationNet) -> None:
        self.name = name
        self.path = path
        self.net = net

    def restore(self, image: Image.Image, *, codeformer_weight: float = 0.5) -> RestoredImage:
        return restore_image_faces(
            image, lambda face: self.net.restore_face(face, weight=codeformer_weight))


class FaceRestorers:
    """The restorers whose weights are installed, and the one network loaded (on first use)."""

    def __init__(self, folders: Iterable[tuple[str, Path]], *,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 allow_unsafe_pickle: bool = False) -> None:
        self.folders = {name: Path(folder) for name, folder in folders}
        self.device = device
        self.dtype = dtype
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self._lock = threading.Lock()
        self._loaded: FaceRestorer | None = None

    def installed(self) -> dict[str, Path]:
        """name → weights file (the first by name) of every restorer with a file in its folder."""
        found: dict[str, Path] = {}
        for name, folder in self.folders.items():
            files = sorted(path for path in folder.glob("*")
                           if path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES) \
                if folder.is_dir() else []
            if files:
                found[name] = files[0]
        return found

    def check(self, name: str) -> Path:
        """The weights file of `name`; UnsupportedRequestError (naming the folder) if absent."""
        installed = self.installed()
        if name in installed:
            return installed[name]
        if not installed:
            raise UnsupportedRequestError(not_installed_message(self.folders))
        folder = self.folders.get(name)
        where = f"; put its weights in {folder}" if folder is not None else ""
        raise UnsupportedRequestError(f"Face restorer '{name}' is not installed (installed: "
                                      f"{', '.join(installed)}){where}")

    def get(self, name: str) -> FaceRestorer:
        """The loaded restorer `name` (loading it, and unloading another, when needed);
        UnsupportedRequestError when it is absent or its file is not a CodeFormer / GFPGAN."""
        path = self.check(name)
        with self._lock:
            if self._loaded is not None and self._loaded.path == path:
                return self._loaded
            self._loaded = None
            try:
                net = load_face_restoration_net(path, self.device, dtype=self.dtype,
                                                allow_unsafe_pickle=self.allow_unsafe_pickle)
            except UpscalerModelError as error:
                raise UnsupportedRequestError(
                    f"Face restorer '{name}' cannot be loaded from {path.name}: {error}") from error
            if net.architecture != name:
                raise UnsupportedRequestError(
                    f"Face restorer '{name}': {path.name} holds a {net.architecture} model")
            self._loaded = FaceRestorer(name, path, net)
            return self._loaded


def restorers_of(ctx: "ProcessingContext") -> FaceRestorers:
    return ctx.face_restorers if getattr(ctx, "face_restorers", None) is not None \
        else FaceRestorers(ctx.paths.face_restorer_dirs)


def wants_face_restoration(params: Any, options: Any) -> bool:
    """The request's `restore_faces`, or the `face_restoration` setting when the field is null."""
    requested = getattr(params, "restore_faces", None)
    return bool(options.get("face_restoration") if requested is None else requested)


def face_restorer_for_job(params: Any, ctx: "ProcessingContext") -> FaceRestorer | None:
    """The restorer this job uses (None when it does not ask for one), loaded before sampling:
    UnsupportedRequestError when the one the settings name is not installed."""
    if not wants_face_restoration(params, ctx.options):
        return None
    restorers = restorers_of(ctx)
    installed = restorers.installed()
    wanted = ctx.options.get("face_restoration_model") or next(iter(installed), CODEFORMER)
    return restorers.get(wanted)


def restore_faces(images: list[Image.Image], ctx: "ProcessingContext", restorer: FaceRestorer,
                  notes: list[str] | None = None) -> list[Image.Image]:
    """The generation hook: every image with its faces restored (CodeFormer at the
    `code_former_weight` setting); an image without a face is kept and noted in `notes`."""
    weight = float(ctx.options.get("code_former_weight") or 0)
    results = []
    for image in images:
        restored = restorer.restore(image, codeformer_weight=weight)
        if restored.faces == 0 and notes is not None and NO_FACE_NOTE not in " ".join(notes):
            notes.append(f"Face restoration: {NO_FACE_NOTE}")
        results.append(restored.image)
    return results
