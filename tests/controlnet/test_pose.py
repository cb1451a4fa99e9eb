"""openpose from mediapipe's bundled pose model on real photographs (scikit-image's wheel): the
skeleton lies on the person, an image without one gives an empty map and a message, and the
OpenPose JSON round-trips into the same map."""
from __future__ import annotations

import os

import numpy as np
import pytest
import skimage
from PIL import Image

from modules.controlnet.pose import BODY_NAMES, draw_pose, pose_from_json
from modules.controlnet.preprocessors import PreprocessorRegistry

DATA = os.path.join(os.path.dirname(skimage.__file__), "data")


def photo(name: str) -> np.ndarray:
    return np.asarray(Image.open(os.path.join(DATA, name)).convert("RGB"))


def person_mask(image: np.ndarray) -> np.ndarray:
    """mediapipe's bundled selfie segmentation: an independent model's idea of the person."""
    import mediapipe as mp

    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as segmenter:
        return segmenter.process(image).segmentation_mask > 0.3


@pytest.mark.parametrize("name", ["astronaut.png", "camera.png"])
def test_openpose_keypoints_lie_on_the_person(name):
    image = photo(name)
    openpose = PreprocessorRegistry().get("openpose")
    detected = openpose(image, processor_res=min(image.shape[:2]))
    assert detected.message is None
    people = detected.pose["people"]
    assert len(people) == 1
    flat = people[0]["pose_keypoints_2d"]
    points = [(x, y) for x, y, c in zip(flat[0::3], flat[1::3], flat[2::3]) if c > 0]
    assert len(points) >= 5          # at least the head and the shoulders
    mask = person_mask(image)
    # grown by 10 px: keypoints sit on joints, near the outline
    import cv2
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((21, 21), np.uint8)) > 0
    on_person = [grown[int(y), int(x)] for x, y in points]
    assert sum(on_person) >= 0.9 * len(points), (name, points)
    assert detected.image.shape == image.shape and detected.image.max() > 0
    nose, neck = flat[0:3], flat[3:6]
    assert nose[2] and neck[2] and nose[1] < neck[1]          # the head above the neck


def test_an_image_without_a_person_gives_an_empty_map_and_a_message():
    image = photo("brick.png")
    detected = PreprocessorRegistry().get("openpose")(image, processor_res=256)
    assert detected.message == "no person found in the image"
    assert detected.image.max() == 0
    assert detected.pose == {"people": [], "canvas_width": 256, "canvas_height": 256}


def test_pose_json_renders_the_same_map_without_the_photo():
    image = photo("astronaut.png")
    detected = PreprocessorRegistry().get("openpose")(image, processor_res=512)
    pose, width, height = pose_from_json(detected.pose)
    assert len(pose.body) == len(BODY_NAMES)
    assert np.array_equal(draw_pose(pose, width, height), detected.image)


def test_face_and_person_segmentation_find_the_astronaut_and_nothing_in_bricks():
    registry = PreprocessorRegistry()
    astronaut, bricks = photo("astronaut.png"), photo("brick.png")
    face = registry.get("mediapipe_face")(astronaut, processor_res=512)
    assert face.message is None
    ys, xs = np.nonzero(face.image.max(axis=2))
    # the face mesh lies in the upper middle of the portrait, around the head
    assert 100 < xs.mean() < 350 and 40 < ys.mean() < 250
    segmented = registry.get("seg_mediapipe_selfie")(astronaut, processor_res=512)
    person = np.all(segmented.image == (150, 5, 61), axis=2)
    assert 0.3 < person.mean() < 0.8
    assert registry.get("mediapipe_face")(bricks, processor_res=256).message
    assert registry.get("seg_mediapipe_selfie")(bricks, processor_res=256).image.max() == 0


def test_openpose_full_puts_the_face_keypoints_on_the_face_the_body_model_found():
    image = photo("astronaut.png")
    detected = PreprocessorRegistry().get("openpose_full")(image, processor_res=512)
    person = detected.pose["people"][0]
    face = np.array(person["face_keypoints_2d"]).reshape(-1, 3)
    assert face.shape == (70, 3) and (face[:, 2] == 1).all()
    body = np.array(person["pose_keypoints_2d"]).reshape(-1, 3)
    # the face mesh's nose tip and pupils against the pose model's nose and eyes (independent
    # networks): within 4% of the image
    tolerance = 0.04 * 512
    assert np.hypot(*(face[30, :2] - body[0, :2])) < tolerance
    assert np.hypot(*(face[68, :2] - body[14, :2])) < tolerance      # right pupil, right eye
    assert np.hypot(*(face[69, :2] - body[15, :2])) < tolerance
    # each pupil lies between its eye's corners; the brows above the eyes, the mouth below
    assert face[36, 0] < face[68, 0] < face[39, 0] and face[42, 0] < face[69, 0] < face[45, 0]
    assert face[17:27, 1].mean() < face[36:48, 1].mean() < face[48:68, 1].mean()
    # white face dots are drawn on the map
    x, y = face[30, :2].astype(int)
    assert (detected.image[y, x] == 255).all()


def test_openpose_faceonly_draws_no_body_and_says_when_there_is_no_face():
    registry = PreprocessorRegistry()
    faceonly = registry.get("openpose_faceonly")(photo("astronaut.png"), processor_res=256)
    person = faceonly.pose["people"][0]
    assert not any(person["pose_keypoints_2d"]) and len(person["face_keypoints_2d"]) == 210
    colours = {tuple(c) for c in faceonly.image.reshape(-1, 3)}
    assert colours == {(0, 0, 0), (255, 255, 255)}          # white dots only, no limbs
    nothing = registry.get("openpose_faceonly")(photo("brick.png"), processor_res=128)
    assert nothing.message == "no face found in the image" and nothing.image.max() == 0
