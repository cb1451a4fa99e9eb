"""The service's store on its own: schema version, WAL, both-or-neither writes of a row and its
image, owners, cascade delete, and a database from a newer build refused with a message."""
from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "extensions-builtin" / "character-pose"))

from lib_character_pose.store import (Character, CharacterStore, Render,  # noqa: E402
                                      StoreError, new_id, now)


def character(owner: str = "alice") -> Character:
    return Character(new_id(), owner, "knight", now(), {"prompt": "a knight", "seed": 5}, 5,
                     "tiny.safetensors", "abc123", "a knight\nSeed: 5", "")


def test_rows_and_images_are_written_together_and_per_owner(tmp_path):
    store = CharacterStore(tmp_path)
    assert store.schema_version == 1
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    made = store.add_character(character(), b"png bytes")
    assert (tmp_path / made.image).read_bytes() == b"png bytes"
    assert store.character("bob", made.id) is None and store.characters("bob") == []
    assert store.character("alice", made.id).parameters == {"prompt": "a knight", "seed": 5}
    render = store.add_render(Render(new_id(), made.id, now(), "standing", "openpose", {}, 5,
                                     "text", ""), b"render")
    assert [r.id for r in store.renders(made.id)] == [render.id]
    assert not store.delete_character("bob", made.id)
    assert store.delete_character("alice", made.id)
    assert store.renders(made.id) == [] and not (tmp_path / made.image).exists()


def test_a_failed_insert_leaves_no_file(tmp_path):
    store = CharacterStore(tmp_path)
    first = store.add_character(character(), b"one")
    duplicate = character()
    duplicate.id = first.id                     # the row cannot be inserted
    with pytest.raises(sqlite3.IntegrityError):
        store.add_character(duplicate, b"two")
    assert (tmp_path / first.image).read_bytes() == b"one"
    assert [p.name for p in (tmp_path / "images" / first.id).iterdir()] == ["character.png"]


def test_a_database_from_a_newer_build_is_refused(tmp_path):
    CharacterStore(tmp_path).close()
    with sqlite3.connect(tmp_path / "characters.sqlite3") as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="schema version 99"):
        CharacterStore(tmp_path)
