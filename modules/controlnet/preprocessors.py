"""ControlNet preprocessors ("modules" in sd-webui-controlnet's API): an input photo → the control
map a ControlNet was trained on. Names, sliders and defaults are sd-webui-controlnet's, so clients
send the same `module`, `processor_res`, `threshold_a` / `threshold_b`.

The image is first brought to `processor_res` on its short side (cubic when enlarging, area when
shrinking, as the extension does), the detector runs there, and the caller resizes the map to the
generation size with the unit's resize mode.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np


class PreprocessorError(ValueError):
    """The input cannot be preprocessed (the message says why)."""


@dataclass(frozen=True)
class Slider:
    name: str
    value: float
    minimum: float
    maximum: float
    step: float = 1.0


RESOLUTION = Slider("Preprocessor Resolution", 512, 64, 2048, 8)


@dataclass(frozen=True)
class DetectedMap:
    image: np.ndarray                   # H x W x 3 uint8
    message: str | None = None          # e.g. "no person found"
    pose: dict | None = None            # OpenPose JSON, for pose detectors


@dataclass(frozen=True)
class Preprocessor:
    name: str
    control_types: tuple[str, ...]      # the "Control Type" filters it belongs to
    run: Callable[[np.ndarray, int, float, float], DetectedMap]
    sliders: tuple[Slider | None, ...] = (RESOLUTION, None, None)   # resolution, a, b
    #: whether the ControlNet input is the photo itself ("none", "invert" …): no resolution
    model_free: bool = False
    aliases: tuple[str, ...] = field(default=())

    def defaults(self, processor_res: float, threshold_a: float,
                 threshold_b: float) -> tuple[int, float, float]:
        """sd-webui-controlnet's bound check: a value outside a slider's range (-1 for "default")
        becomes the slider's default."""
        values = []
        for slider, value in zip(self.sliders, (processor_res, threshold_a, threshold_b)):
            if slider is None:
                values.append(value)
            elif value < slider.minimum or value > slider.maximum:
                values.append(slider.value)
            else:
                values.append(value)
        return int(values[0]), float(values[1]), float(values[2])

    def __call__(self, image: np.ndarray, processor_res: float = -1, threshold_a: float = -1,
                 threshold_b: float = -1) -> DetectedMap:
        resolution, a, b = self.defaults(processor_res, threshold_a, threshold_b)
        return self.run(rgb_uint8(image), resolution, a, b)

    def detail(self) -> dict:
        """The `module_detail` entry of GET /controlnet/module_list."""
        return {"model_free": self.model_free,
                "sliders": [{"name": s.name, "value": s.value, "min": s.minimum,
                             "max": s.maximum, "step": s.step}
                            for s in self.sliders if s is not None]}


def rgb_uint8(image: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 from grey, RGB or RGBA input."""
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def resize_short_side(image: np.ndarray, resolution: int) -> np.ndarray:
    """The image scaled so its short side is `resolution` (cubic up, area down)."""
    height, width = image.shape[:2]
    scale = resolution / min(height, width)
    if scale == 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)


def _as_map(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _none(image: np.ndarray, resolution: int, a: float, b: float) -> DetectedMap:
    return DetectedMap(image)


def _invert(image: np.ndarray, resolution: int, a: float, b: float) -> DetectedMap:
    """White background and black lines → the black background, white lines ControlNets see."""
    return DetectedMap(255 - image)


def _canny(image: np.ndarray, resolution: int, low: float, high: float) -> DetectedMap:
    edges = cv2.Canny(resize_short_side(image, resolution), int(low), int(high))
    return DetectedMap(_as_map(edges))


def _threshold(image: np.ndarray, resolution: int, level: float, b: float) -> DetectedMap:
    gray = cv2.cvtColor(resize_short_side(image, resolution), cv2.COLOR_RGB2GRAY)
    return DetectedMap(_as_map(np.where(gray > level, 255, 0).astype(np.uint8)))


def _scribble_xdog(image: np.ndarray, resolution: int, threshold: float, b: float) -> DetectedMap:
    """Difference of Gaussians, thresholded: scribble-like lines without a model."""
    resized = resize_short_side(image, resolution).astype(np.float32)
    difference = cv2.GaussianBlur(resized, (0, 0), 0.5) - cv2.GaussianBlur(resized, (0, 0), 5.0)
    lines = np.min(difference, axis=2)
    return DetectedMap(_as_map(np.where(lines < -threshold, 255, 0).astype(np.uint8)))


def _openpose(*, hands: bool = False, face: bool = False, body: bool = True
              ) -> Callable[[np.ndarray, int, float, float], DetectedMap]:
    def run(image: np.ndarray, resolution: int, a: float, b: float) -> DetectedMap:
        from modules.controlnet.pose import NO_FACE, NO_PERSON, detect_pose, draw_pose, \
            pose_json

        resized = resize_short_side(image, resolution)
        height, width = resized.shape[:2]
        pose = detect_pose(resized, hands=hands, face=face, body=body)
        message = None if pose else (NO_PERSON if body else NO_FACE)
        return DetectedMap(draw_pose(pose, width, height), message,
                           pose_json(pose, width, height))
    return run


#: ADE20K's colour for "person", what segmentation ControlNets were trained on
ADE20K_PERSON = (150, 5, 61)


def _selfie_segmentation(image: np.ndarray, resolution: int, threshold: float,
                         b: float) -> DetectedMap:
    """People in ADE20K's person colour on black, from mediapipe's bundled selfie model."""
    import mediapipe as mp

    resized = resize_short_side(image, resolution)
    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as segmenter:
        mask = segmenter.process(resized).segmentation_mask > threshold
    result = np.zeros_like(resized)
    result[mask] = ADE20K_PERSON
    return DetectedMap(result, None if mask.any() else "no person found in the image")


def _mediapipe_face(image: np.ndarray, resolution: int, max_faces: float,
                    min_confidence: float) -> DetectedMap:
    """Face mesh contours (eyes, brows, lips, oval) drawn with mediapipe's own drawing styles."""
    import mediapipe as mp

    resized = resize_short_side(image, resolution)
    canvas = np.zeros_like(resized)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=int(max_faces),
                                         refine_landmarks=True,
                                         min_detection_confidence=min_confidence) as mesh:
        faces = mesh.process(resized).multi_face_landmarks or []
    for face in faces:
        mp.solutions.drawing_utils.draw_landmarks(
            canvas, face, mp.solutions.face_mesh.FACEMESH_CONTOURS, landmark_drawing_spec=None,
            connection_drawing_spec=mp.solutions.drawing_styles
            .get_default_face_mesh_contours_style())
    return DetectedMap(canvas, None if faces else "no face found in the image")


_MODEL_FREE = (None, None, None)
PREPROCESSORS: tuple[Preprocessor, ...] = (
    Preprocessor("none", ("All",), _none, _MODEL_FREE, model_free=True),
    Preprocessor("invert (from white bg & black line)", ("All", "Canny", "Lineart", "Scribble"),
                 _invert, _MODEL_FREE, model_free=True, aliases=("invert",)),
    Preprocessor("canny", ("All", "Canny"), _canny,
                 (RESOLUTION, Slider("Canny Low Threshold", 100, 1, 255),
                  Slider("Canny High Threshold", 200, 1, 255))),
    Preprocessor("threshold", ("All", "Threshold"), _threshold,
                 (RESOLUTION, Slider("Binarization Threshold", 127, 0, 255), None)),
    Preprocessor("scribble_xdog", ("All", "Scribble"), _scribble_xdog,
                 (RESOLUTION, Slider("XDoG Threshold", 32, 1, 64), None)),
    Preprocessor("openpose", ("All", "OpenPose"), _openpose()),
    Preprocessor("openpose_face", ("All", "OpenPose"), _openpose(face=True)),
    Preprocessor("openpose_faceonly", ("All", "OpenPose"), _openpose(face=True, body=False)),
    Preprocessor("openpose_full", ("All", "OpenPose"), _openpose(hands=True, face=True)),
    Preprocessor("openpose_hand", ("All", "OpenPose"), _openpose(hands=True)),
    Preprocessor("mediapipe_face", ("All", "MediaPipe Face"), _mediapipe_face,
                 (RESOLUTION, Slider("Max Faces", 1, 1, 10), Slider("Min Face Confidence", 0.5,
                                                                    0.01, 1.0, 0.01))),
    Preprocessor("seg_mediapipe_selfie", ("All", "Segmentation"), _selfie_segmentation,
                 (RESOLUTION, Slider("Person Threshold", 0.5, 0.05, 0.95, 0.05), None)),
)


class PreprocessorRegistry:
    """The preprocessors by name or alias."""

    def __init__(self, preprocessors: tuple[Preprocessor, ...] = PREPROCESSORS) -> None:
        self._items = list(preprocessors)
        self._by_name = {name: item for item in self._items
                         for name in (item.name, *item.aliases)}

    def names(self) -> list[str]:
        return [item.name for item in self._items]

    def get(self, name: str | None) -> Preprocessor | None:
        return self._by_name.get(name or "none")

    def control_types(self) -> list[str]:
        return list(dict.fromkeys(tag for item in self._items for tag in item.control_types))

    def for_control_type(self, control_type: str) -> list[str]:
        return [item.name for item in self._items
                if control_type == "All" or control_type in item.control_types]
