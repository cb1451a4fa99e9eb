"""OpenPose-style pose maps from mediapipe's bundled models (no download): the pose landmarker's
33 body landmarks mapped to OpenPose's 18 body keypoints, mediapipe's 21 hand landmarks (which
follow OpenPose's hand order), the face mesh's landmarks picked to OpenPose's 70 face keypoints
(the 68-point layout and the two pupils), drawn in OpenPose's colour convention, and the
OpenPose JSON (`pose_keypoints_2d` …, pixel coordinates) that sd-webui-controlnet returns and
renders.

mediapipe's pose solution finds one person per image; OpenPose's own networks are not used.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np

#: OpenPose body-18 keypoint ← mediapipe pose landmark(s) (two: the midpoint, for the neck)
BODY_FROM_MEDIAPIPE: tuple[tuple[int, ...], ...] = (
    (0,), (11, 12), (12,), (14,), (16,), (11,), (13,), (15,), (24,), (26,), (28,), (23,), (25,),
    (27,), (5,), (2,), (8,), (7,))
BODY_NAMES = ("nose", "neck", "right shoulder", "right elbow", "right wrist", "left shoulder",
              "left elbow", "left wrist", "right hip", "right knee", "right ankle", "left hip",
              "left knee", "left ankle", "right eye", "left eye", "right ear", "left ear")
#: OpenPose's limbs (1-based keypoint pairs) and colours, in its drawing order
LIMBS = ((2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12),
         (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18))
COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
          (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
          (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
HAND_EDGES = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
              (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18),
              (18, 19), (19, 20))
#: OpenPose's 70 face keypoints ← face mesh landmarks (refined: 468 / 473 are the iris centres).
#: Jaw from the person's right ear to the left, brows, nose bridge and base, eyes, outer and
#: inner lips, pupils.
FACE_FROM_MEDIAPIPE = (
    127, 234, 93, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
    78, 81, 13, 311, 308, 402, 14, 178,
    468, 473)
STICK_WIDTH = 4
MIN_VISIBILITY = 0.5
NO_PERSON = "no person found in the image"
NO_FACE = "no face found in the image"
MAX_CANVAS = 4096          # a pose rendered from JSON (its canvas size is the client's)

Point = tuple[float, float] | None      # normalised (x, y) in [0, 1], or missing


@dataclass
class Pose:
    body: list[Point]                   # 18 OpenPose keypoints
    left_hand: list[Point] | None = None
    right_hand: list[Point] | None = None
    face: list[Point] | None = None     # 70 OpenPose face keypoints


_lock = threading.Lock()   # mediapipe graphs are not thread-safe; one detection at a time


def detect_pose(image: np.ndarray, *, hands: bool = False, face: bool = False,
                body: bool = True) -> Pose | None:
    """The person in an RGB uint8 image, or None. With `body=False` only the face is looked
    for (openpose_faceonly)."""
    if not body:
        points = detect_face(image)
        return Pose([None] * len(BODY_NAMES), face=points) if points else None
    import mediapipe as mp

    with _lock, mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1) as detector:
        result = detector.process(image)
    if result.pose_landmarks is None:
        return None
    landmarks = result.pose_landmarks.landmark

    def seen(index: int) -> tuple[float, float] | None:
        mark = landmarks[index]
        inside = 0 <= mark.x <= 1 and 0 <= mark.y <= 1
        return (mark.x, mark.y) if inside and mark.visibility >= MIN_VISIBILITY else None

    body: list[Point] = []
    for sources in BODY_FROM_MEDIAPIPE:
        points = [seen(index) for index in sources]
        if any(point is None for point in points):
            body.append(None)
        else:
            body.append((sum(p[0] for p in points) / len(points),
                         sum(p[1] for p in points) / len(points)))
    if all(point is None for point in body):
        return None
    pose = Pose(body)
    if hands:
        pose.left_hand, pose.right_hand = detect_hands(image)
    if face:
        pose.face = detect_face(image)
    return pose


def detect_face(image: np.ndarray) -> list[Point] | None:
    """OpenPose's 70 face keypoints of the most prominent face, or None."""
    import mediapipe as mp

    with _lock, mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                refine_landmarks=True) as mesh:
        faces = mesh.process(image).multi_face_landmarks
    if not faces:
        return None
    landmarks = faces[0].landmark
    return [(landmarks[index].x, landmarks[index].y) for index in FACE_FROM_MEDIAPIPE]


def detect_hands(image: np.ndarray) -> tuple[list[Point] | None, list[Point] | None]:
    """(left, right) hands of the person (as the person sees them), 21 points each."""
    import mediapipe as mp

    with _lock, mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=2,
                                         model_complexity=1) as detector:
        result = detector.process(image)
    left = right = None
    for landmarks, handedness in zip(result.multi_hand_landmarks or [],
                                     result.multi_handedness or []):
        points: list[Point] = [(mark.x, mark.y) for mark in landmarks.landmark]
        # mediapipe labels hands as seen in a mirrored (selfie) image
        if handedness.classification[0].label == "Left":
            right = points
        else:
            left = points
    return left, right


def draw_pose(pose: Pose | None, width: int, height: int) -> np.ndarray:
    """OpenPose's rendering on black: limbs as ellipses at 60% colour, then the keypoints."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    if pose is None:
        return canvas
    body = pose.body
    for (first, second), color in zip(LIMBS, COLORS):
        a, b = body[first - 1], body[second - 1]
        if a is None or b is None:
            continue
        xs, ys = np.array([a[0], b[0]]) * width, np.array([a[1], b[1]]) * height
        length = math.hypot(xs[0] - xs[1], ys[0] - ys[1])
        angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
        polygon = cv2.ellipse2Poly((int(xs.mean()), int(ys.mean())),
                                   (int(length / 2), STICK_WIDTH), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, [int(c * 0.6) for c in color])
    for point, color in zip(body, COLORS):
        if point is not None:
            cv2.circle(canvas, (int(point[0] * width), int(point[1] * height)), 4, color, -1)
    for hand in (pose.left_hand, pose.right_hand):
        if hand:
            _draw_hand(canvas, hand)
    for point in pose.face or []:
        if point is not None:       # OpenPose draws face keypoints as small white dots
            cv2.circle(canvas, (int(point[0] * width), int(point[1] * height)), 3,
                       (255, 255, 255), -1)
    return canvas


def _draw_hand(canvas: np.ndarray, hand: list[Point]) -> None:
    height, width = canvas.shape[:2]
    for index, (first, second) in enumerate(HAND_EDGES):
        a, b = hand[first], hand[second]
        if a is None or b is None:
            continue
        hue = index / len(HAND_EDGES)
        color = cv2.cvtColor(np.uint8([[[int(hue * 179), 255, 255]]]), cv2.COLOR_HSV2RGB)[0, 0]
        cv2.line(canvas, (int(a[0] * width), int(a[1] * height)),
                 (int(b[0] * width), int(b[1] * height)), [int(c) for c in color], 2)
    for point in hand:
        if point is not None:
            cv2.circle(canvas, (int(point[0] * width), int(point[1] * height)), 4, (0, 0, 255), -1)


def _flat(points: list[Point] | None, width: int, height: int) -> list[float] | None:
    if points is None:
        return None
    values: list[float] = []
    for point in points:
        values += [0.0, 0.0, 0.0] if point is None else [point[0] * width, point[1] * height, 1.0]
    return values


def pose_json(pose: Pose | None, width: int, height: int) -> dict:
    """OpenPose JSON as sd-webui-controlnet returns it (pixel coordinates, confidence 1 / 0)."""
    people = []
    if pose is not None:
        people.append({"pose_keypoints_2d": _flat(pose.body, width, height),
                       "hand_left_keypoints_2d": _flat(pose.left_hand, width, height),
                       "hand_right_keypoints_2d": _flat(pose.right_hand, width, height),
                       "face_keypoints_2d": _flat(pose.face, width, height)})
    return {"people": people, "canvas_width": width, "canvas_height": height}


def pose_from_json(data: dict) -> tuple[Pose | None, int, int]:
    """The first person of OpenPose JSON (pixel or normalised coordinates) and the canvas size,
    so an edited pose renders without a photo."""
    width, height = int(data.get("canvas_width") or 512), int(data.get("canvas_height") or 512)
    if not (0 < width <= MAX_CANVAS and 0 < height <= MAX_CANVAS):
        raise ValueError(f"canvas {width}x{height} is outside 1-{MAX_CANVAS} px")
    people = data.get("people") or []
    if not people:
        return None, width, height

    def points(values: list[float] | None) -> list[Point] | None:
        if not values:
            return None
        normalised = max(values[0::3] + values[1::3], default=0) <= 1.0
        scale_x, scale_y = (1.0, 1.0) if normalised else (1 / width, 1 / height)
        return [None if c <= 0 else (x * scale_x, y * scale_y)
                for x, y, c in zip(values[0::3], values[1::3], values[2::3])]

    person = people[0]
    body = points(person.get("pose_keypoints_2d")) or [None] * len(BODY_NAMES)
    return Pose(body[:len(BODY_NAMES)], points(person.get("hand_left_keypoints_2d")),
                points(person.get("hand_right_keypoints_2d")),
                points(person.get("face_keypoints_2d"))), width, height
