"""The image browser's index: every picture under the outputs folder with what its infotext says
(prompt, negative prompt, seed, model), in SQLite beside the data, so listing, filtering and
paging stay fast on tens of thousands of files.

Saved images are added as they are written (the `image_saved` callback); `scan()` brings the
index in line with the folder (files added, changed or removed outside the app). Deleting moves
the file (and its `.txt`) into `<outputs>/.trash/`, from where `restore` puts it back.
"""
from __future__ import annotations

import shutil
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from PIL import Image, UnidentifiedImageError

from modules.processing.images import read_info_from_image
from modules.processing.infotext import parse_generation_parameters

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
TRASH = ".trash"
SORTS = {"newest": "mtime DESC, path DESC", "oldest": "mtime ASC, path ASC",
         "name": "path ASC"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    path TEXT PRIMARY KEY, folder TEXT NOT NULL, mtime REAL NOT NULL, bytes INTEGER NOT NULL,
    width INTEGER, height INTEGER, prompt TEXT NOT NULL DEFAULT '',
    negative_prompt TEXT NOT NULL DEFAULT '', seed INTEGER, model TEXT NOT NULL DEFAULT '',
    infotext TEXT NOT NULL DEFAULT '', favourite INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS images_by_time ON images (mtime);
CREATE INDEX IF NOT EXISTS images_by_folder ON images (folder, mtime);
CREATE INDEX IF NOT EXISTS images_by_seed ON images (seed);
CREATE TABLE IF NOT EXISTS trash (
    trashed TEXT PRIMARY KEY, original TEXT NOT NULL, favourite INTEGER NOT NULL DEFAULT 0);
"""


@dataclass(frozen=True)
class ImageRecord:
    path: str                 # relative to the outputs folder, "/" separators
    folder: str               # its first folder: txt2img-images, img2img-grids, ...
    mtime: float
    width: int | None
    height: int | None
    prompt: str
    negative_prompt: str
    seed: int | None
    model: str
    infotext: str
    favourite: bool


@dataclass(frozen=True)
class ImagePage:
    items: list[ImageRecord]
    total: int
    page: int
    pages: int


def describe(path: Path) -> dict | None:
    """What the index keeps of one picture; None when it is not a readable image."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            infotext, _ = read_info_from_image(image)
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    params = parse_generation_parameters(infotext) if infotext else {}
    seed = params.get("Seed")
    try:
        seed = int(seed) if seed is not None else None
    except (TypeError, ValueError):
        seed = None
    return {"width": width, "height": height, "prompt": str(params.get("Prompt") or ""),
            "negative_prompt": str(params.get("Negative prompt") or ""), "seed": seed,
            "model": str(params.get("Model") or ""), "infotext": infotext or ""}


class ImageIndex:
    def __init__(self, database: Path, outputs_dir: Path) -> None:
        self.database = Path(database)
        self.outputs_dir = Path(outputs_dir)
        self.trash_dir = self.outputs_dir / TRASH
        self._lock = threading.RLock()
        self._connection: sqlite3.Connection | None = None

    @property
    def _db(self) -> sqlite3.Connection:
        """The database, opened (and its tables made) on first use."""
        with self._lock:
            if self._connection is None:
                self.database.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(str(self.database), check_same_thread=False)
                connection.row_factory = sqlite3.Row
                with connection:
                    connection.executescript(SCHEMA)
                self._connection = connection
            return self._connection

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    # -- keeping it current ---------------------------------------------------------------------
    def relative(self, path: Path | str) -> str:
        """A path under the outputs folder as the index names it; ValueError outside it."""
        resolved = Path(path)
        if not resolved.is_absolute():
            resolved = self.outputs_dir / resolved
        resolved = resolved.resolve()
        relative = resolved.relative_to(self.outputs_dir.resolve())
        if relative.parts and relative.parts[0] == TRASH:
            raise ValueError(f"{path} is in the trash")
        return relative.as_posix()

    def add(self, path: Path | str) -> bool:
        """Index (or re-index) one file; False when it is no readable image."""
        relative = self.relative(path)
        absolute = self.outputs_dir / relative
        info = describe(absolute) if absolute.suffix.lower() in IMAGE_SUFFIXES else None
        if info is None:
            return False
        stat = absolute.stat()
        folder = relative.split("/", 1)[0] if "/" in relative else ""
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO images (path, folder, mtime, bytes, width, height, prompt, "
                "negative_prompt, seed, model, infotext) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(path) DO UPDATE SET folder=excluded.folder, mtime=excluded.mtime, "
                "bytes=excluded.bytes, width=excluded.width, height=excluded.height, "
                "prompt=excluded.prompt, negative_prompt=excluded.negative_prompt, "
                "seed=excluded.seed, model=excluded.model, infotext=excluded.infotext",
                (relative, folder, stat.st_mtime, stat.st_size, info["width"], info["height"],
                 info["prompt"], info["negative_prompt"], info["seed"], info["model"],
                 info["infotext"]))
        return True

    def scan(self) -> tuple[int, int]:
        """Bring the index in line with the folder: (files added or changed, rows removed)."""
        on_disk: dict[str, tuple[float, int]] = {}
        if self.outputs_dir.is_dir():
            for path in self.outputs_dir.rglob("*"):
                if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                    continue
                relative = path.relative_to(self.outputs_dir).as_posix()
                if relative.split("/", 1)[0] == TRASH:
                    continue
                stat = path.stat()
                on_disk[relative] = (stat.st_mtime, stat.st_size)
        with self._lock:
            known = {row["path"]: (row["mtime"], row["bytes"]) for row in
                     self._db.execute("SELECT path, mtime, bytes FROM images")}
        gone = [path for path in known if path not in on_disk]
        if gone:
            with self._lock, self._db:
                self._db.executemany("DELETE FROM images WHERE path = ?",
                                     [(path,) for path in gone])
        changed = [path for path, stamp in on_disk.items() if known.get(path) != stamp]
        added = sum(self.add(path) for path in changed)
        return added, len(gone)

    # -- reading -------------------------------------------------------------------------------
    def query(self, *, folder: str | None = None, text: str = "", seed: int | None = None,
              model: str = "", favourites: bool = False, sort: str = "newest", page: int = 1,
              page_size: int = 36) -> ImagePage:
        """One page of the images that match (text: every word in the prompt or negative
        prompt; model: part of its name)."""
        where, args = ["1=1"], []
        if folder:
            where.append("folder = ?")
            args.append(folder)
        for word in text.split():
            where.append("(prompt LIKE ? ESCAPE '\\' OR negative_prompt LIKE ? ESCAPE '\\')")
            pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") \
                + "%"
            args += [pattern, pattern]
        if seed is not None:
            where.append("seed = ?")
            args.append(int(seed))
        if model:
            where.append("model LIKE ?")
            args.append(f"%{model}%")
        if favourites:
            where.append("favourite = 1")
        order = SORTS.get(sort, SORTS["newest"])
        page_size = max(1, min(int(page_size), 500))
        condition = " AND ".join(where)
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM images WHERE {condition}",
                                     args).fetchone()[0]
            pages = max(1, -(-total // page_size))
            page = max(1, min(int(page), pages))
            rows = self._db.execute(
                f"SELECT * FROM images WHERE {condition} ORDER BY {order} LIMIT ? OFFSET ?",
                [*args, page_size, (page - 1) * page_size]).fetchall()
        return ImagePage([_record(row) for row in rows], total, page, pages)

    def get(self, path: str) -> ImageRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM images WHERE path = ?",
                                   (self.relative(path),)).fetchone()
        return _record(row) if row is not None else None

    def folders(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute(
                "SELECT DISTINCT folder FROM images ORDER BY folder")]

    # -- changing ------------------------------------------------------------------------------
    def set_favourite(self, path: str, favourite: bool) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE images SET favourite = ? WHERE path = ?",
                             (int(bool(favourite)), self.relative(path)))

    def delete(self, path: str) -> str:
        """Move the picture (and its .txt) to the trash; returns its name there."""
        relative = self.relative(path)
        source = self.outputs_dir / relative
        if not source.is_file():
            raise FileNotFoundError(f"{relative} does not exist")
        target = self.trash_dir / relative
        number = 1
        while target.exists():
            target = target.with_name(f"{source.stem}-{number}{source.suffix}")
            number += 1
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), target)
        for sidecar in _sidecars(source):
            shutil.move(str(sidecar), target.with_suffix(sidecar.suffix))
        trashed = target.relative_to(self.trash_dir).as_posix()
        with self._lock, self._db:
            row = self._db.execute("SELECT favourite FROM images WHERE path = ?",
                                   (relative,)).fetchone()
            self._db.execute("DELETE FROM images WHERE path = ?", (relative,))
            self._db.execute("INSERT OR REPLACE INTO trash VALUES (?, ?, ?)",
                             (trashed, relative, row[0] if row else 0))
        return trashed

    def trashed(self) -> list[tuple[str, str]]:
        """(name in the trash, where it came from), most recent last."""
        with self._lock:
            return [(row[0], row[1]) for row in self._db.execute(
                "SELECT trashed, original FROM trash ORDER BY rowid")]

    def restore(self, trashed: str) -> str:
        """Put a deleted picture back where it was; returns its path."""
        with self._lock:
            row = self._db.execute("SELECT original, favourite FROM trash WHERE trashed = ?",
                                   (trashed,)).fetchone()
        if row is None:
            raise FileNotFoundError(f"{trashed} is not in the trash")
        original, favourite = row
        source = self.trash_dir / trashed
        target = self.outputs_dir / original
        if target.exists():
            raise FileExistsError(f"{original} exists again: not overwritten")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), target)
        for sidecar in _sidecars(source):
            shutil.move(str(sidecar), target.with_suffix(sidecar.suffix))
        with self._lock, self._db:
            self._db.execute("DELETE FROM trash WHERE trashed = ?", (trashed,))
        self.add(original)
        if favourite:
            self.set_favourite(original, True)
        return original


def _sidecars(path: Path) -> Iterable[Path]:
    text = path.with_suffix(".txt")
    return [text] if text.is_file() else []


def _record(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(path=row["path"], folder=row["folder"], mtime=row["mtime"],
                       width=row["width"], height=row["height"], prompt=row["prompt"],
                       negative_prompt=row["negative_prompt"], seed=row["seed"],
                       model=row["model"], infotext=row["infotext"],
                       favourite=bool(row["favourite"]))
