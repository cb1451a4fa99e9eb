"""The face-restoration hook of generation (A1111's `restore_faces` / `face_restoration` setting).

Restorers are data: `FACE_RESTORER_KINDS` lists what this build can run (name, weights folder
under models/, a loader). It is empty until the postprocessing issue adds CodeFormer and GFPGAN
(through spandrel); until then a request that asks for face restoration is refused before
sampling starts with a message that says what to install.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from PIL import Image

from modules.processing.context import UnsupportedRequestError

if TYPE_CHECKING:
    from modules.processing.context import ProcessingContext

NOT_INSTALLED_MESSAGE = ("Face restoration is not available: no face restorer is installed "
                         "(put CodeFormer/GFPGAN weights in models/Codeformer or models/GFPGAN)")


class FaceRestorer(Protocol):
    """A loaded restorer: `restore` returns the image with its faces restored (same size)."""
    name: str

    def restore(self, image: Image.Image) -> Image.Image: ...


@dataclass(frozen=True)
class FaceRestorerKind:
    """One restorer this build can run and where its weights live."""
    name: str                              # the `face_restoration_model` choice: "CodeFormer"…
    folder: str                            # under models/: "Codeformer", "GFPGAN"
    patterns: tuple[str, ...]              # weight file globs, e.g. ("*.pth", "*.safetensors")
    load: Callable[[Path, Any], FaceRestorer]   # (weights file, options) → restorer


#: restorers this build can run; the postprocessing issue adds CodeFormer and GFPGAN here
FACE_RESTORER_KINDS: tuple[FaceRestorerKind, ...] = ()


def installed_face_restorers(models_dir: Path, kinds: Sequence[FaceRestorerKind] = FACE_RESTORER_KINDS
                             ) -> dict[str, Path]:
    """name → weights file of every restorer whose weights are in `models_dir` (first match)."""
    found: dict[str, Path] = {}
    for kind in kinds:
        folder = Path(models_dir) / kind.folder
        matches = sorted(p for pattern in kind.patterns for p in folder.glob(pattern) if p.is_file())
        if matches:
            found[kind.name] = matches[0]
    return found


def wants_face_restoration(params: Any, options: Any) -> bool:
    """The request's `restore_faces`, or the `face_restoration` setting when the field is null."""
    requested = getattr(params, "restore_faces", None)
    return bool(options.get("face_restoration") if requested is None else requested)


def face_restorer_for_job(params: Any, ctx: "ProcessingContext",
                          kinds: Sequence[FaceRestorerKind] = FACE_RESTORER_KINDS
                          ) -> FaceRestorer | None:
    """The restorer this job uses (None when it does not ask for one), decided before sampling.
    UnsupportedRequestError when it asks for one that is not installed."""
    if not wants_face_restoration(params, ctx.options):
        return None
    return load_face_restorer(ctx, kinds)


def load_face_restorer(ctx: "ProcessingContext",
                       kinds: Sequence[FaceRestorerKind] = FACE_RESTORER_KINDS) -> FaceRestorer:
    """The restorer the `face_restoration_model` setting names, loaded from its weights file;
    UnsupportedRequestError when it (or any restorer) is not installed."""
    installed = installed_face_restorers(ctx.paths.models_dir, kinds)
    if not installed:
        raise UnsupportedRequestError(NOT_INSTALLED_MESSAGE)
    wanted = ctx.options.get("face_restoration_model") or next(iter(installed))
    if wanted not in installed:
        raise UnsupportedRequestError(
            f"Face restoration model '{wanted}' is not installed (installed: "
            f"{', '.join(installed)}); choose one in the face_restoration_model setting")
    kind = next(k for k in kinds if k.name == wanted)
    return kind.load(installed[wanted], ctx.options)


def restore_faces(images: list[Image.Image], ctx: "ProcessingContext",
                  restorer: FaceRestorer | None = None,
                  kinds: Sequence[FaceRestorerKind] = FACE_RESTORER_KINDS) -> list[Image.Image]:
    """The generation hook: every image with its faces restored, by `restorer` or the one the
    settings choose (UnsupportedRequestError when none is installed)."""
    if restorer is None:
        restorer = load_face_restorer(ctx, kinds)
    return [restorer.restore(image) for image in images]
