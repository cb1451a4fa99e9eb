"""How the preset poses were made (`tools/make_poses.py` writes them to poses/): each is built
from joint angles so it is a plausible skeleton, as OpenPose body-18 keypoints on a 512 x 768
canvas.

Angles are in degrees, 0 pointing down the canvas, 90 towards the canvas' right, 180 up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

CANVAS = (512, 768)                 # width, height: a portrait frame for one figure
SHOULDER, HIP = 42.0, 28.0          # half widths (px)
UPPER_ARM, FOREARM = 78.0, 72.0
TORSO = 205.0                       # neck to the middle of the hips
THIGH, SHIN = 112.0, 108.0
NOSE, EYE_UP, EYE_SIDE, EAR_UP, EAR_SIDE = 52.0, 60.0, 11.0, 54.0, 24.0


@dataclass(frozen=True)
class Figure:
    """A pose as limb angles (upper, lower) per limb, the person's right / left."""
    right_arm: tuple[float, float] = (-8.0, -4.0)
    left_arm: tuple[float, float] = (8.0, 4.0)
    right_leg: tuple[float, float] = (-3.0, 0.0)
    left_leg: tuple[float, float] = (3.0, 0.0)
    facing: str = "front"           # front, back, right (towards the canvas' right), left
    neck: tuple[float, float] = (256.0, 215.0)
    lean: float = 0.0               # torso angle from vertical (degrees, + = top to the right)
    rotate: float = 0.0             # the whole figure turned around its hips (lying down)
    hidden: frozenset[str] = field(default_factory=frozenset)


def _step(origin: tuple[float, float], angle: float, length: float) -> tuple[float, float]:
    radians = math.radians(angle)
    return origin[0] + math.sin(radians) * length, origin[1] + math.cos(radians) * length


def keypoints(figure: Figure) -> list[tuple[float, float] | None]:
    """The 18 OpenPose body keypoints in pixels (None: not visible)."""
    width_scale = {"front": 1.0, "back": 1.0}.get(figure.facing, 0.35)
    # the person's right is on the canvas' left when facing us, on the right from behind
    side = 1.0 if figure.facing in ("back", "left") else -1.0
    neck = figure.neck
    hips = (neck[0] - math.sin(math.radians(figure.lean)) * TORSO,
            neck[1] + math.cos(math.radians(figure.lean)) * TORSO)
    across = (math.cos(math.radians(figure.lean)), math.sin(math.radians(figure.lean)))

    def beside(point: tuple[float, float], distance: float, sign: float):
        return (point[0] + across[0] * distance * sign * width_scale,
                point[1] + across[1] * distance * sign * width_scale)

    r_shoulder, l_shoulder = beside(neck, SHOULDER, side), beside(neck, SHOULDER, -side)
    r_hip, l_hip = beside(hips, HIP, side), beside(hips, HIP, -side)
    r_elbow = _step(r_shoulder, figure.right_arm[0], UPPER_ARM)
    r_wrist = _step(r_elbow, figure.right_arm[1], FOREARM)
    l_elbow = _step(l_shoulder, figure.left_arm[0], UPPER_ARM)
    l_wrist = _step(l_elbow, figure.left_arm[1], FOREARM)
    r_knee = _step(r_hip, figure.right_leg[0], THIGH)
    r_ankle = _step(r_knee, figure.right_leg[1], SHIN)
    l_knee = _step(l_hip, figure.left_leg[0], THIGH)
    l_ankle = _step(l_knee, figure.left_leg[1], SHIN)
    up = (math.sin(math.radians(figure.lean)), -math.cos(math.radians(figure.lean)))
    facing_shift = {"right": 18.0, "left": -18.0}.get(figure.facing, 0.0)

    def head(up_by: float, sideways: float) -> tuple[float, float]:
        return (neck[0] + up[0] * up_by + across[0] * sideways + facing_shift,
                neck[1] + up[1] * up_by + across[1] * sideways)

    nose = head(NOSE, 0.0)
    r_eye, l_eye = head(EYE_UP, EYE_SIDE * side), head(EYE_UP, -EYE_SIDE * side)
    r_ear, l_ear = head(EAR_UP, EAR_SIDE * side), head(EAR_UP, -EAR_SIDE * side)
    points: dict[str, tuple[float, float] | None] = {
        "nose": nose, "neck": neck, "right shoulder": r_shoulder, "right elbow": r_elbow,
        "right wrist": r_wrist, "left shoulder": l_shoulder, "left elbow": l_elbow,
        "left wrist": l_wrist, "right hip": r_hip, "right knee": r_knee, "right ankle": r_ankle,
        "left hip": l_hip, "left knee": l_knee, "left ankle": l_ankle, "right eye": r_eye,
        "left eye": l_eye, "right ear": r_ear, "left ear": l_ear}
    hidden = set(figure.hidden)
    if figure.facing == "back":
        hidden |= {"nose", "right eye", "left eye"}
    if figure.facing == "right":        # the person's left side faces the viewer
        hidden |= {"right eye", "right ear"}
    if figure.facing == "left":
        hidden |= {"left eye", "left ear"}
    if figure.rotate:
        centre = hips
        turn = math.radians(figure.rotate)
        for name, point in points.items():
            dx, dy = point[0] - centre[0], point[1] - centre[1]
            points[name] = (centre[0] + dx * math.cos(turn) - dy * math.sin(turn),
                            centre[1] + dx * math.sin(turn) + dy * math.cos(turn))
    order = ("nose", "neck", "right shoulder", "right elbow", "right wrist", "left shoulder",
             "left elbow", "left wrist", "right hip", "right knee", "right ankle", "left hip",
             "left knee", "left ankle", "right eye", "left eye", "right ear", "left ear")
    return [None if name in hidden else points[name] for name in order]


PRESETS: dict[str, tuple[str, Figure]] = {
    "standing": ("Standing", Figure()),
    "walking": ("Walking", Figure(right_arm=(18, 30), left_arm=(-16, -6), right_leg=(14, 2),
                                  left_leg=(-12, -22), facing="right", lean=4)),
    "running": ("Running", Figure(right_arm=(-45, 60), left_arm=(55, 150), right_leg=(-40, -100),
                                  left_leg=(60, 5), facing="right", lean=14,
                                  neck=(250, 220))),
    "jumping": ("Jumping", Figure(right_arm=(-150, -165), left_arm=(150, 165),
                                  right_leg=(-25, 15), left_leg=(25, -15), neck=(256, 180))),
    "sitting": ("Sitting on a chair", Figure(right_arm=(10, 60), left_arm=(5, 55),
                                             right_leg=(88, 2), left_leg=(92, 4), facing="right",
                                             neck=(230, 250))),
    "waving": ("Waving", Figure(right_arm=(-115, -165))),
    "arms_crossed": ("Arms crossed", Figure(right_arm=(-12, 80), left_arm=(12, -80))),
    "pointing": ("Pointing", Figure(right_arm=(-88, -90), left_arm=(6, 3), neck=(300, 215))),
    "kneeling": ("Kneeling on one knee", Figure(right_arm=(5, 8), left_arm=(40, 10),
                                                right_leg=(-5, -95), left_leg=(95, 0),
                                                facing="right", neck=(250, 300))),
    "dancing": ("Dancing", Figure(right_arm=(-125, -160), left_arm=(70, 110),
                                  right_leg=(-8, 0), left_leg=(50, 80), lean=-6)),
    "looking_back": ("Looking back over the shoulder", Figure(right_arm=(10, 5),
                                                              left_arm=(-10, -5),
                                                              facing="back")),
    "lying_down": ("Lying down", Figure(right_arm=(-10, -5), left_arm=(10, 5), right_leg=(-2, 0),
                                        left_leg=(2, 0), rotate=-90, neck=(300, 330))),
}
