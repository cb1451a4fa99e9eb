"""The pose library: presets shipped with the extension (`poses/*.json`, OpenPose JSON with a
rendered skeleton `poses/*.png` beside each) and the user's own poses from the store. Posted
keypoints are checked here so a malformed pose is a clear 422, not a broken render."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BODY_POINTS = 18                    # OpenPose COCO body keypoints
MAX_CANVAS = 4096
MIN_VISIBLE = 4                     # fewer visible keypoints is no pose to draw


class PoseError(ValueError):
    """Keypoints that cannot be a pose (the message says what is wrong)."""


@dataclass(frozen=True)
class Preset:
    id: str
    name: str
    keypoints: dict[str, Any]       # OpenPose JSON: people, canvas_width, canvas_height
    preview: Path


def load_presets(folder: Path) -> dict[str, Preset]:
    presets = {}
    for path in sorted(Path(folder).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        keypoints = checked_keypoints(data)
        presets[path.stem] = Preset(path.stem, str(data.get("name") or path.stem), keypoints,
                                    path.with_suffix(".png"))
    return presets


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        raise PoseError(f"{where} must be a finite number, not {value!r}")
    return float(value)


def checked_keypoints(data: Any) -> dict[str, Any]:
    """OpenPose JSON ({"people": [{"pose_keypoints_2d": [x, y, c] * 18, …}], "canvas_width",
    "canvas_height"}) validated and reduced to the first person's body, hands and face."""
    if not isinstance(data, dict):
        raise PoseError("keypoints must be an OpenPose JSON object")
    width = _number(data.get("canvas_width", 512), "canvas_width")
    height = _number(data.get("canvas_height", 512), "canvas_height")
    if not (64 <= width <= MAX_CANVAS and 64 <= height <= MAX_CANVAS):
        raise PoseError(f"canvas {width:g}x{height:g} is outside 64-{MAX_CANVAS} px")
    people = data.get("people")
    if not isinstance(people, list) or not people or not isinstance(people[0], dict):
        raise PoseError("keypoints need \"people\": a list with at least one person")
    person = people[0]
    body = person.get("pose_keypoints_2d")
    if not isinstance(body, list) or len(body) < 3 * BODY_POINTS or len(body) % 3:
        raise PoseError(f"pose_keypoints_2d must list {BODY_POINTS} keypoints as x, y, "
                        "confidence triples")
    checked: dict[str, Any] = {}
    for name in ("pose_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d",
                 "face_keypoints_2d"):
        values = person.get(name)
        if values is None:
            continue
        if not isinstance(values, list) or len(values) % 3:
            raise PoseError(f"{name} must be a list of x, y, confidence triples")
        numbers = [_number(value, name) for value in values]
        if name == "pose_keypoints_2d":
            numbers = numbers[:3 * BODY_POINTS]
        checked[name] = numbers
    visible = sum(1 for c in checked["pose_keypoints_2d"][2::3] if c > 0)
    if visible < MIN_VISIBLE:
        raise PoseError(f"only {visible} body keypoints are visible (confidence > 0); a pose "
                        f"needs at least {MIN_VISIBLE}")
    return {"people": [checked], "canvas_width": int(width), "canvas_height": int(height)}
