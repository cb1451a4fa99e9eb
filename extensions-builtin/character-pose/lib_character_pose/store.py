"""Characters, their re-posed images and user poses, kept in SQLite (WAL, schema versioned) with
the images as PNG files beside the database. A record and its file are written so that a failure
leaves neither: the file is written under a temporary name first, the row inserted, and only then
the file renamed into place (a row whose rename failed is deleted again).

Every read and delete names the owner (the --api-auth user, "" without auth): another owner's id
is not found.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS characters (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, created REAL NOT NULL,
    parameters TEXT NOT NULL, seed INTEGER NOT NULL, checkpoint TEXT NOT NULL,
    checkpoint_hash TEXT NOT NULL, infotext TEXT NOT NULL, image TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS characters_owner ON characters (owner, created);
CREATE TABLE IF NOT EXISTS renders (
    id TEXT PRIMARY KEY,
    character_id TEXT NOT NULL REFERENCES characters (id) ON DELETE CASCADE,
    created REAL NOT NULL, pose_id TEXT, control TEXT NOT NULL, settings TEXT NOT NULL,
    seed INTEGER NOT NULL, infotext TEXT NOT NULL, image TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS renders_character ON renders (character_id, created);
CREATE TABLE IF NOT EXISTS poses (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, created REAL NOT NULL,
    keypoints TEXT NOT NULL, photo TEXT);
"""


class StoreError(RuntimeError):
    """The store cannot be used (its schema is newer than this code, the disk failed …)."""


@dataclass
class Character:
    id: str
    owner: str
    name: str
    created: float
    parameters: dict[str, Any]      # the txt2img request that made it (seed resolved)
    seed: int
    checkpoint: str
    checkpoint_hash: str
    infotext: str
    image: str                      # path relative to the store's folder


@dataclass
class Render:
    id: str
    character_id: str
    created: float
    pose_id: str | None
    control: str
    settings: dict[str, Any]        # weight, guidance window, models and modules used
    seed: int
    infotext: str
    image: str


@dataclass
class UserPose:
    id: str
    owner: str
    name: str
    created: float
    keypoints: dict[str, Any]       # OpenPose JSON
    photo: str | None = None        # kept only when asked
    extra: dict[str, Any] = field(default_factory=dict)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


class CharacterStore:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "characters.sqlite3"
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- schema --------------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self._lock, self._transaction():
            for statement in SCHEMA.strip().split(";"):
                if statement.strip():
                    self._db.execute(statement)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row["value"]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema version {version}; this build knows "
                                 f"{SCHEMA_VERSION} (use a newer build)")
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES "
                             "('schema_version', ?)", (str(SCHEMA_VERSION),))

    @property
    def schema_version(self) -> int:
        return int(self._row("SELECT value FROM meta WHERE key='schema_version'")["value"])

    # -- helpers -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _rows(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _row(self, sql: str, *params: Any) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, params).fetchone()

    def _write_with_row(self, relative: str, data: bytes, insert: Any) -> None:
        """`data` at `relative` and the row `insert()` writes, both or neither."""
        target = self.folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            with self._lock, self._transaction():
                insert()
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def file(self, relative: str) -> Path:
        return self.folder / relative

    # -- characters ----------------------------------------------------------------------------
    def add_character(self, character: Character, image_png: bytes) -> Character:
        character.image = f"images/{character.id}/character.png"

        def insert() -> None:
            self._db.execute(
                "INSERT INTO characters (id, owner, name, created, parameters, seed, checkpoint, "
                "checkpoint_hash, infotext, image) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (character.id, character.owner, character.name, character.created,
                 json.dumps(character.parameters), character.seed, character.checkpoint,
                 character.checkpoint_hash, character.infotext, character.image))
        self._write_with_row(character.image, image_png, insert)
        return character

    def characters(self, owner: str) -> list[Character]:
        return [_character(row) for row in self._rows(
            "SELECT * FROM characters WHERE owner=? ORDER BY created", owner)]

    def character(self, owner: str, character_id: str) -> Character | None:
        row = self._row("SELECT * FROM characters WHERE id=? AND owner=?", character_id, owner)
        return _character(row) if row else None

    def delete_character(self, owner: str, character_id: str) -> bool:
        with self._lock, self._transaction():
            deleted = self._db.execute("DELETE FROM characters WHERE id=? AND owner=?",
                                       (character_id, owner)).rowcount
        if deleted:
            shutil.rmtree(self.folder / "images" / character_id, ignore_errors=True)
        return bool(deleted)

    # -- renders -------------------------------------------------------------------------------
    def add_render(self, render: Render, image_png: bytes) -> Render:
        render.image = f"images/{render.character_id}/{render.id}.png"

        def insert() -> None:
            self._db.execute(
                "INSERT INTO renders (id, character_id, created, pose_id, control, settings, "
                "seed, infotext, image) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (render.id, render.character_id, render.created, render.pose_id, render.control,
                 json.dumps(render.settings), render.seed, render.infotext, render.image))
        self._write_with_row(render.image, image_png, insert)
        return render

    def renders(self, character_id: str) -> list[Render]:
        return [_render(row) for row in self._rows(
            "SELECT * FROM renders WHERE character_id=? ORDER BY created", character_id)]

    def render(self, character_id: str, render_id: str) -> Render | None:
        row = self._row("SELECT * FROM renders WHERE id=? AND character_id=?", render_id,
                        character_id)
        return _render(row) if row else None

    # -- user poses ----------------------------------------------------------------------------
    def add_pose(self, pose: UserPose, photo_png: bytes | None = None) -> UserPose:
        def insert() -> None:
            self._db.execute(
                "INSERT INTO poses (id, owner, name, created, keypoints, photo) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (pose.id, pose.owner, pose.name, pose.created, json.dumps(pose.keypoints),
                 pose.photo))
        if photo_png is None:
            with self._lock, self._transaction():
                insert()
        else:
            pose.photo = f"poses/{pose.id}.png"
            self._write_with_row(pose.photo, photo_png, insert)
        return pose

    def poses(self, owner: str) -> list[UserPose]:
        return [_pose(row) for row in self._rows(
            "SELECT * FROM poses WHERE owner=? ORDER BY created", owner)]

    def pose(self, owner: str, pose_id: str) -> UserPose | None:
        row = self._row("SELECT * FROM poses WHERE id=? AND owner=?", pose_id, owner)
        return _pose(row) if row else None

    def delete_pose(self, owner: str, pose_id: str) -> bool:
        pose = self.pose(owner, pose_id)
        if pose is None:
            return False
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM poses WHERE id=? AND owner=?", (pose_id, owner))
        if pose.photo:
            (self.folder / pose.photo).unlink(missing_ok=True)
        return True


def _character(row: sqlite3.Row) -> Character:
    return Character(row["id"], row["owner"], row["name"], row["created"],
                     json.loads(row["parameters"]), row["seed"], row["checkpoint"],
                     row["checkpoint_hash"], row["infotext"], row["image"])


def _render(row: sqlite3.Row) -> Render:
    return Render(row["id"], row["character_id"], row["created"], row["pose_id"], row["control"],
                  json.loads(row["settings"]), row["seed"], row["infotext"], row["image"])


def _pose(row: sqlite3.Row) -> UserPose:
    return UserPose(row["id"], row["owner"], row["name"], row["created"],
                    json.loads(row["keypoints"]), row["photo"])


def now() -> float:
    return time.time()
