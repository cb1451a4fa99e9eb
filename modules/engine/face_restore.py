"""Face restoration: find the faces of an image with mediapipe's bundled models (no download),
align each one to the 512×512 FFHQ five-point template, restore it with a GFPGAN or CodeFormer
network (loaded by spandrel from the user's file), and paste it back through the inverse
transform under a feathered mask. Pixels outside the pasted faces are left exactly as they were.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import spandrel
import torch
from PIL import Image

from modules.engine.upscaler_models import UpscalerModelError, load_image_model

FACE_SIZE = 512
#: the five points (eye, eye, nose tip, mouth corner, mouth corner; image-left first for a
#: frontal face) of an aligned 512×512 face, as GFPGAN and CodeFormer were trained on them
FFHQ_TEMPLATE = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                          [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float32)
#: the grey the aligned crop is padded with where it leaves the image (as the networks saw)
PAD_COLOUR = (135, 133, 132)
#: face-mesh landmarks: the subject's right eye corners, left eye corners, nose tip, and the
#: mouth corners (right, left) — the subject's right is the image's left for a frontal face
MESH_RIGHT_EYE, MESH_LEFT_EYE, MESH_NOSE, MESH_MOUTH = (33, 133), (362, 263), 1, (61, 291)
#: mouth half-width as a fraction of the eye distance in the template (detector fallback)
MOUTH_HALF_WIDTH = 0.444
RESTORER_ARCHITECTURES = ("GFPGAN", "CodeFormer")


@dataclass(frozen=True)
class Face:
    """One face found in an image: five landmarks in pixels and the detector's box and score."""
    points: np.ndarray                            # 5×2, FFHQ_TEMPLATE's order
    box: tuple[float, float, float, float]        # left, top, width, height in pixels
    score: float


def _mesh_points(crop: np.ndarray) -> np.ndarray | None:
    """The five points from mediapipe's face mesh on a crop around one face (crop pixels)."""
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        found = mesh.process(crop).multi_face_landmarks
    if not found:
        return None
    marks = found[0].landmark
    height, width = crop.shape[:2]

    def at(*indices: int) -> list[float]:
        return [sum(marks[i].x for i in indices) / len(indices) * width,
                sum(marks[i].y for i in indices) / len(indices) * height]
    return np.array([at(*MESH_RIGHT_EYE), at(*MESH_LEFT_EYE), at(MESH_NOSE),
                     at(MESH_MOUTH[0]), at(MESH_MOUTH[1])], dtype=np.float32)


def _detector_points(keypoints: np.ndarray) -> np.ndarray:
    """The five points from the face detector's six (eyes, nose, mouth centre, ears): the mouth
    corners are placed along the eye line at the template's proportions."""
    right_eye, left_eye, nose, mouth = keypoints[:4]
    half_mouth = (left_eye - right_eye) * MOUTH_HALF_WIDTH
    return np.array([right_eye, left_eye, nose, mouth - half_mouth, mouth + half_mouth],
                    dtype=np.float32)


def detect_faces(image: np.ndarray, *, min_confidence: float = 0.5,
                 max_faces: int = 16) -> list[Face]:
    """The faces of an RGB uint8 image, largest first: mediapipe's full-range face detector
    finds them, its face mesh on a crop around each gives the eye, nose and mouth points (the
    detector's own keypoints where the mesh finds nothing)."""
    import mediapipe as mp

    height, width = image.shape[:2]
    with mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_confidence) as detector:
        detections = detector.process(np.ascontiguousarray(image)).detections or []
    faces = []
    for detection in detections:
        box = detection.location_data.relative_bounding_box
        left, top = box.xmin * width, box.ymin * height
        wide, tall = box.width * width, box.height * height
        keypoints = np.array([[point.x * width, point.y * height]
                              for point in detection.location_data.relative_keypoints],
                             dtype=np.float32)
        # a square crop of twice the box, where the mesh's own detector finds the face again
        side = 2 * max(wide, tall)
        x0 = int(max(0, left + wide / 2 - side / 2))
        y0 = int(max(0, top + tall / 2 - side / 2))
        x1, y1 = int(min(width, x0 + side)), int(min(height, y0 + side))
        points = _mesh_points(np.ascontiguousarray(image[y0:y1, x0:x1]))
        if points is None or not _near_box(points + (x0, y0), (left, top, wide, tall)):
            points = _detector_points(keypoints)
        else:
            points = points + np.array([x0, y0], dtype=np.float32)
        faces.append(Face(points, (left, top, wide, tall), float(detection.score[0])))
    faces.sort(key=lambda face: face.box[2] * face.box[3], reverse=True)
    return faces[:max_faces]


def _near_box(points: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    """Whether the mesh's points belong to the detected face (not another one in the crop)."""
    left, top, wide, tall = box
    centre = points.mean(axis=0)
    return abs(centre[0] - (left + wide / 2)) < wide / 2 and \
        abs(centre[1] - (top + tall / 2)) < tall / 2


def alignment(points: np.ndarray) -> np.ndarray:
    """The 2×3 similarity transform that takes the face's points onto the template."""
    matrix, _ = cv2.estimateAffinePartial2D(points, FFHQ_TEMPLATE, method=cv2.LMEDS)
    if matrix is None:        # degenerate points: fall back to least squares on all five
        matrix, _ = cv2.estimateAffinePartial2D(points, FFHQ_TEMPLATE, method=0)
    return matrix


def aligned_face(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(image, matrix, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=PAD_COLOUR)


def paste_face(image: np.ndarray, restored: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """`image` (float32 H×W×3) with the restored aligned face warped back in place, blended
    under a mask that fades out over a border of about a twentieth of the face's size."""
    height, width = image.shape[:2]
    inverse = cv2.invertAffineTransform(matrix)
    back = cv2.warpAffine(restored.astype(np.float32), inverse, (width, height),
                          flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.ones((FACE_SIZE, FACE_SIZE), np.float32), inverse, (width, height),
                          flags=cv2.INTER_NEAREST)
    side = float(np.sqrt(mask.sum()))          # the face square's side in the image
    border = max(1, int(side) // 20)
    mask = cv2.erode(mask, np.ones((2 * border + 1, 2 * border + 1), np.uint8))
    mask = cv2.GaussianBlur(mask, (2 * border + 1, 2 * border + 1), 0)[..., None]
    return np.where(mask > 0, image * (1 - mask) + back * mask, image)


class FaceRestorationNet:
    """A GFPGAN or CodeFormer network: an aligned 512×512 RGB uint8 face in, restored out."""

    def __init__(self, descriptor: spandrel.ImageModelDescriptor) -> None:
        self.descriptor = descriptor
        self.architecture = descriptor.architecture.name

    @torch.inference_mode()
    def restore_face(self, face: np.ndarray, weight: float = 0.5) -> np.ndarray:
        """`weight` is CodeFormer's fidelity (0 = most restoration, 1 = closest to the input)."""
        model = self.descriptor.model
        parameter = next(model.parameters())
        pixels = torch.from_numpy(face).permute(2, 0, 1)[None].float() / 127.5 - 1
        pixels = pixels.to(parameter.device, parameter.dtype)
        if self.architecture == "CodeFormer":
            output = model(pixels, weight=float(weight))[0]
        else:   # GFPGAN; its stored noise, so that the same face restores the same way
            output = model(pixels, return_rgb=False, randomize_noise=False)[0]
        output = (output.float().clamp(-1, 1) + 1) * 127.5
        return output[0].permute(1, 2, 0).round().to(torch.uint8).cpu().numpy()


def load_face_restoration_net(path: Path, device: torch.device | str = "cpu", *,
                              dtype: torch.dtype = torch.float32,
                              allow_unsafe_pickle: bool = False) -> FaceRestorationNet:
    """A GFPGAN or CodeFormer file as a network; UpscalerModelError for anything else."""
    descriptor = load_image_model(path, device, dtype=dtype,
                                  allow_unsafe_pickle=allow_unsafe_pickle)
    if descriptor.architecture.name not in RESTORER_ARCHITECTURES:
        raise UpscalerModelError(f"a {descriptor.architecture.name} model, not GFPGAN or "
                                 "CodeFormer")
    return FaceRestorationNet(descriptor)


@dataclass
class RestoredImage:
    image: Image.Image
    faces: int          # how many faces were restored (0: the image is unchanged)


def restore_image_faces(image: Image.Image, restore_face: Callable[[np.ndarray], np.ndarray],
                        *, faces: list[Face] | None = None) -> RestoredImage:
    """Every face of `image` restored by `restore_face` (aligned uint8 face → restored face) and
    pasted back; an image without a face comes back as it was."""
    rgb = np.asarray(image.convert("RGB"))
    found = detect_faces(rgb) if faces is None else faces
    if not found:
        return RestoredImage(image, 0)
    canvas = rgb.astype(np.float32)
    for face in found:
        matrix = alignment(face.points)
        if matrix is None:
            continue
        restored = restore_face(aligned_face(rgb, matrix))
        canvas = paste_face(canvas, restored, matrix)
    result = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
    return RestoredImage(result, len(found))
