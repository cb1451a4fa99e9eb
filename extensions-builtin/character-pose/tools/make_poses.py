"""Write the preset poses (poses/<id>.json, OpenPose JSON, and poses/<id>.png, the skeleton as
OpenPose draws it) from lib_character_pose.figures. Run from the project root:
    venv/bin/python extensions-builtin/character-pose/tools/make_poses.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

from PIL import Image  # noqa: E402

from lib_character_pose.figures import CANVAS, PRESETS, keypoints  # noqa: E402
from modules.controlnet.pose import Pose, draw_pose  # noqa: E402


def main() -> None:
    folder = HERE / "poses"
    folder.mkdir(exist_ok=True)
    width, height = CANVAS
    for pose_id, (name, figure) in PRESETS.items():
        points = keypoints(figure)
        flat: list[float] = []
        for point in points:
            flat += [0.0, 0.0, 0.0] if point is None else [round(point[0], 1),
                                                           round(point[1], 1), 1.0]
        data = {"name": name, "canvas_width": width, "canvas_height": height,
                "people": [{"pose_keypoints_2d": flat}]}
        (folder / f"{pose_id}.json").write_text(json.dumps(data, indent=1) + "\n",
                                                encoding="utf-8")
        normalised = [None if p is None else (p[0] / width, p[1] / height) for p in points]
        Image.fromarray(draw_pose(Pose(normalised), width, height)).save(
            folder / f"{pose_id}.png", optimize=True)
        print(pose_id, name)


if __name__ == "__main__":
    main()
