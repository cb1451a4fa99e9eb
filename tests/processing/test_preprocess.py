"""Preprocessing pictures for training: crops to the target size around the focal point (the
astronaut's face), splits long pictures into overlapping pieces, mirrored copies, captions from
file names combined with existing ones, any image mode, unreadable files left out, folders kept
inside the allowed ones."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage
from PIL import Image, ImageOps

from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.app.training_service import run_preprocess
from modules.engine.face_restore import detect_faces
from modules.processing.preprocess import (PreprocessRequest, focal_point, preprocess,
                                           split_pieces)
from modules.processing.training_create import TrainingInputError

PHOTOS = Path(skimage.__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]


def test_the_focal_point_is_the_face_and_the_crop_keeps_it():
    astronaut = Image.open(PHOTOS / "astronaut.png").convert("RGB")
    (face,) = detect_faces(np.asarray(astronaut))
    left, top, width, height = face.box
    x, y = focal_point(astronaut, PreprocessRequest(focal_entropy_weight=0,
                                                    focal_edges_weight=0))
    assert left <= x <= left + width and top <= y <= top + height
    # a tall, narrow target: the column kept is the one with the face
    request = PreprocessRequest(width=64, height=256, focal_crop=True)
    cx, _ = focal_point(astronaut, request)
    assert abs(cx - (left + width / 2)) < 64        # faces outweigh the rest by default


def test_long_pictures_split_into_overlapping_pieces():
    wide = Image.new("RGB", (300, 100))
    pieces = split_pieces(wide, 64, 64, threshold=0.5, overlap=0.2)
    assert len(pieces) == 4 and all(piece.size == (64, 64) for piece in pieces)
    assert split_pieces(Image.new("RGB", (120, 100)), 64, 64, 0.5, 0.2) == []
    tall = split_pieces(Image.new("RGB", (100, 260)), 64, 64, 0.5, 0.2)
    assert len(tall) == 3


def test_a_folder_becomes_training_pictures_with_captions(tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    astronaut = Image.open(PHOTOS / "astronaut.png").resize((200, 160))
    astronaut.save(source / "an_astronaut.png")
    (source / "an_astronaut.txt").write_text("nasa")
    astronaut.convert("P").save(source / "0003-palette_copy.png")
    Image.fromarray((np.asarray(astronaut.convert("L"), dtype=np.uint16) * 257)).save(
        source / "sixteen_bit.png")
    Image.new("RGB", (400, 100), (10, 200, 10)).save(source / "long_strip.png")
    (source / "broken.png").write_bytes(b"nope")
    result = preprocess(source, target, PreprocessRequest(
        width=64, height=64, flip=True, split=True, existing_captions="prepend",
        caption_blip=True), captioners={})
    names = sorted(path.name for path in result.written)
    assert "00000-0-0003-palette_copy.png" in names
    assert sum(name.startswith("00003-") for name in names) == 10    # 5 pieces + their flips
    assert [entry.split(":")[0] for entry in result.skipped] == ["broken.png"]
    assert result.notes == ["BLIP weights are not installed: captions from file names"]
    first = target / "00001-0-an_astronaut.png"
    assert Image.open(first).size == (64, 64)
    assert first.with_suffix(".txt").read_text() == "nasa, an astronaut"
    assert (target / "00000-0-0003-palette_copy.txt").read_text() == "palette copy"
    flipped = Image.open(target / "00001-0-an_astronaut-flipped.png")
    assert np.array_equal(np.asarray(flipped), np.asarray(ImageOps.mirror(Image.open(first))))
    assert Image.open(target / "00004-0-sixteen_bit.png").mode == "RGB"


def test_folders_are_checked(tmp_path):
    args, _ = parse_args(["--data-dir", str(tmp_path), "--skip-load-model-at-start"])
    ctx = build_app_context(args, ROOT)
    try:
        (tmp_path / "pictures").mkdir()
        Image.new("RGB", (80, 80)).save(tmp_path / "pictures" / "a.png")
        with pytest.raises(TrainingInputError, match="outside the allowed folders"):
            run_preprocess(ctx, "/etc", "out", PreprocessRequest(), None)
        with pytest.raises(TrainingInputError, match="outside the allowed folders"):
            run_preprocess(ctx, "pictures", "/tmp/elsewhere", PreprocessRequest(), None)
        with pytest.raises(TrainingInputError, match="must differ"):
            run_preprocess(ctx, "pictures", "pictures", PreprocessRequest(), None)
        with pytest.raises(TrainingInputError, match="no pictures"):
            (tmp_path / "nothing").mkdir()
            run_preprocess(ctx, "nothing", "out", PreprocessRequest(), None)
        done = run_preprocess(ctx, "pictures", "out", PreprocessRequest(width=64, height=64),
                              None)
        assert [path.name for path in done.written] == ["00000-0-a.png"]
        assert (tmp_path / "out" / "00000-0-a.txt").read_text() == "a"
    finally:
        ctx.close()
