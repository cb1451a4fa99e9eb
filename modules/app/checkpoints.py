"""The checkpoint and VAE lists: A1111 titles ("name [hash10]"), names, aliases and cached hashes
(a1111-compat.md §4.8, §5.5).

The files are scanned here; the hashes are read through `HashCache` (cache.json, keyed by
"checkpoint/<name>" with the file's mtime, as A1111 stores them), so a restart does not re-read
gigabytes.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from modules.engine.checkpoint_io import CheckpointLoadError, legacy_model_hash, \
    read_safetensors_metadata, sha256_file

log = logging.getLogger(__name__)

CHECKPOINT_EXTENSIONS = (".safetensors", ".ckpt", ".pt")
VAE_EXTENSIONS = (".safetensors", ".ckpt", ".pt")


def _natural_key(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


class HashCache:
    """cache.json: `{"hashes": {"<kind>/<name>": {"mtime": float, "sha256": str}}}`; other sections
    (A1111 keeps e.g. "safetensors-metadata" there) are preserved. Saved atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, Any] | None = None

    def _loaded(self) -> dict[str, Any]:
        if self._data is None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._data = data if isinstance(data, dict) else {}
            except FileNotFoundError:
                self._data = {}
            except (ValueError, OSError) as error:
                log.warning("Hash cache %s unreadable (%s); starting empty", self.path, error)
                self._data = {}
        return self._data

    def cached_sha256(self, filename: str | Path, key: str) -> str | None:
        """The stored hash if the file's mtime still matches, else None (nothing is computed)."""
        try:
            mtime = os.path.getmtime(filename)
        except OSError:
            return None
        with self._lock:
            entry = self._loaded().get("hashes", {}).get(key)
        if isinstance(entry, dict) and entry.get("mtime") == mtime and entry.get("sha256"):
            return str(entry["sha256"])
        return None

    def sha256(self, filename: str | Path, key: str) -> str:
        """The file's full sha256, from the cache or computed (and then stored)."""
        cached = self.cached_sha256(filename, key)
        if cached is not None:
            return cached
        mtime = os.path.getmtime(filename)
        log.info("Calculating sha256 for %s", filename)
        value = sha256_file(filename)
        with self._lock:
            self._loaded().setdefault("hashes", {})[key] = {"mtime": mtime, "sha256": value}
            self._save_locked()
        return value

    def _save_locked(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(self.path.name + ".tmp")
        temp.write_text(json.dumps(self._data, indent=4), encoding="utf-8")
        os.replace(temp, self.path)


#: the demo checkpoint shipped in models/Stable-diffusion (python -m modules.demo.train_demo_model)
DEMO_CHECKPOINT_FILE = "demo-shapes.safetensors"


@dataclass
class CheckpointInfo:
    filename: str                   # absolute path
    name: str                       # path relative to its folder, "/" separators
    model_name: str                 # name without extension, "/" and "\" → "_"
    sha256: str | None = None
    shorthash: str | None = None    # first 10 hex of sha256
    legacy_hash: str = ""           # 8 hex (64 KiB @ 1 MiB)
    config: str | None = None       # sidecar .yaml
    # (width, height) from the header once read (see native_size); False: not read yet
    _native_size: tuple[int, int] | None | bool = field(default=False, repr=False,
                                                        compare=False)

    @classmethod
    def from_file(cls, filename: Path, name: str) -> "CheckpointInfo":
        sidecar = filename.with_suffix(".yaml")
        return cls(filename=str(filename), name=name,
                   model_name=os.path.splitext(name.replace("/", "_").replace("\\", "_"))[0],
                   legacy_hash=legacy_model_hash(filename),
                   config=str(sidecar) if sidecar.is_file() else None)

    @property
    def title(self) -> str:
        return self.name if self.shorthash is None else f"{self.name} [{self.shorthash}]"

    @property
    def is_demo(self) -> bool:
        """The small demo model this project ships (trained on coloured shapes)."""
        return Path(self.filename).name == DEMO_CHECKPOINT_FILE

    def native_size(self) -> tuple[int, int] | None:
        """(width, height) the model was trained at, from the `modelspec.resolution` metadata of
        a .safetensors file ("64x64"); None when the file does not say. The header is read once."""
        if self._native_size is False:
            try:
                text = read_safetensors_metadata(self.filename).get("modelspec.resolution", "")
                width, height = (int(part) for part in text.lower().split("x"))
                self._native_size = (width, height) if width > 0 and height > 0 else None
            except (CheckpointLoadError, ValueError):
                self._native_size = None
        return self._native_size

    @property
    def stem(self) -> str:
        """The file name without folder and extension (A1111's `name_for_extra`, infotext Model)."""
        return Path(self.filename).stem

    @property
    def aliases(self) -> list[str]:
        names = [self.legacy_hash, self.model_name, self.title, self.name, self.stem,
                 f"{self.name} [{self.legacy_hash}]"]
        if self.shorthash and self.sha256:
            names += [self.shorthash, self.sha256, f"{self.name} [{self.shorthash}]",
                      f"{self.stem} [{self.shorthash}]"]
        return names

    def set_sha256(self, sha256: str) -> None:
        self.sha256 = sha256
        self.shorthash = sha256[:10]

    def calculate_shorthash(self, hash_cache: HashCache | None) -> str:
        """Full sha256 (through the cache when given) → `shorthash`; returned."""
        key = f"checkpoint/{self.name}"
        value = hash_cache.sha256(self.filename, key) if hash_cache else sha256_file(self.filename)
        self.set_sha256(value)
        return value[:10]


def _is_vae_file(path: Path) -> bool:
    return ".vae." in path.name.lower()


def _scan(directory: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Model files under `directory`, following symlinked sub-folders (users often link their
    model collections in, and A1111 follows them)."""
    if not directory.is_dir():
        return []
    found = []
    for folder, _, files in os.walk(directory, followlinks=True):
        for file_name in files:
            path = Path(folder) / file_name
            if path.suffix.lower() in extensions and path.is_file():
                found.append(path)
    return found


class CheckpointRegistry:
    """Checkpoints under `ckpt_dir` (+ --ckpt-dir folders, + a --ckpt file), sorted naturally."""

    def __init__(self, ckpt_dir: Path, *, extra_dirs: Iterable[Path] = (),
                 extra_files: Iterable[Path] = (), hash_cache: HashCache | None = None,
                 no_hashing: bool = False) -> None:
        self.ckpt_dir = Path(ckpt_dir)
        self.extra_dirs = [Path(d) for d in extra_dirs]
        self.extra_files = [Path(f) for f in extra_files]
        self.hash_cache = hash_cache
        self.no_hashing = no_hashing
        self._lock = threading.RLock()
        self._infos: list[CheckpointInfo] = []
        self._aliases: dict[str, CheckpointInfo] = {}

    def _roots(self) -> list[Path]:
        return [self.ckpt_dir.absolute()] + [d.absolute() for d in self.extra_dirs]

    def _relative_name(self, path: Path) -> str:
        for root in self._roots():
            if path.is_relative_to(root):
                return path.relative_to(root).as_posix()
        return path.name

    def refresh(self) -> None:
        found: dict[str, CheckpointInfo] = {}
        candidates = [p for root in self._roots() for p in _scan(root, CHECKPOINT_EXTENSIONS)]
        candidates += [f.absolute() for f in self.extra_files if f.is_file()]
        for path in candidates:
            if _is_vae_file(path):
                continue
            name = self._relative_name(path.absolute())
            if name in found:
                continue
            info = CheckpointInfo.from_file(path.absolute(), name)
            if self.hash_cache is not None and not self.no_hashing:
                cached = self.hash_cache.cached_sha256(info.filename, f"checkpoint/{name}")
                if cached:
                    info.set_sha256(cached)
            found[name] = info
        with self._lock:
            self._infos = sorted(found.values(), key=lambda info: _natural_key(info.name))
            self._reindex()

    def _reindex(self) -> None:
        aliases: dict[str, CheckpointInfo] = {}
        for info in self._infos:
            for alias in info.aliases:
                aliases.setdefault(alias, info)   # the first file (in sorted order) wins a clash
        self._aliases = aliases

    def list(self) -> list[CheckpointInfo]:
        with self._lock:
            return list(self._infos)

    def titles(self) -> list[str]:
        return [info.title for info in self.list()]

    def get_closest(self, alias: str) -> CheckpointInfo | None:
        """Exact match on any alias, else the shortest title containing the text (also retried
        without a trailing " [hash]")."""
        if not alias:
            return None
        with self._lock:
            exact = self._aliases.get(alias)
            if exact is not None:
                return exact
            for text in (alias, re.sub(r"\s\[[^]]*]$", "", alias)):
                matches = sorted((i for i in self._infos if text in i.title), key=lambda i: len(i.title))
                if matches:
                    return matches[0]
        return None

    def ensure_hashed(self, info: CheckpointInfo) -> CheckpointInfo:
        """Compute the sha256 (lazily, once) unless --no-hashing; the title gains " [hash10]"."""
        if info.sha256 or self.no_hashing:
            return info
        info.calculate_shorthash(self.hash_cache)
        with self._lock:
            self._reindex()
        return info


@dataclass
class VaeInfo:
    model_name: str                 # file name with extension, as A1111's VAE dropdown shows it
    filename: str                   # absolute path
    hash_cache: HashCache | None = field(default=None, repr=False, compare=False)
    _sha256: str | None = field(default=None, repr=False, compare=False)

    def sha256(self) -> str:
        if self._sha256 is None:
            key = f"vae/{self.model_name}"
            self._sha256 = (self.hash_cache.sha256(self.filename, key) if self.hash_cache
                            else sha256_file(self.filename))
        return self._sha256

    def shorthash(self) -> str:
        return self.sha256()[:10]


class VaeRegistry:
    """Standalone VAEs: every model file under `vae_dir`, plus `*.vae.*` files in `extra_dirs`
    (checkpoint folders)."""

    def __init__(self, vae_dir: Path, extra_dirs: Iterable[Path] = (), *,
                 hash_cache: HashCache | None = None) -> None:
        self.vae_dir = Path(vae_dir)
        self.extra_dirs = [Path(d) for d in extra_dirs]
        self.hash_cache = hash_cache
        self._lock = threading.Lock()
        self._items: list[VaeInfo] = []

    def refresh(self) -> None:
        paths = _scan(self.vae_dir, VAE_EXTENSIONS)
        paths += [p for d in self.extra_dirs for p in _scan(d, VAE_EXTENSIONS) if _is_vae_file(p)]
        items: dict[str, VaeInfo] = {}
        for path in sorted(paths, key=lambda p: _natural_key(p.name)):
            items.setdefault(path.name, VaeInfo(path.name, str(path.absolute()), self.hash_cache))
        with self._lock:
            self._items = list(items.values())

    def list(self) -> list[VaeInfo]:
        with self._lock:
            return list(self._items)

    def names(self) -> list[str]:
        """Choices of the `sd_vae` setting."""
        return ["Automatic", "None"] + [item.model_name for item in self.list()]

    def find(self, name: str) -> VaeInfo | None:
        """By file name ("x.safetensors"), else by name without extension."""
        items = self.list()
        for item in items:
            if item.model_name == name:
                return item
        for item in items:
            if Path(item.model_name).stem == name:
                return item
        return None

    def find_near_checkpoint(self, checkpoint_filename: str | Path) -> VaeInfo | None:
        """`<stem>.vae.{pt,ckpt,safetensors}` next to a checkpoint (the "Automatic" choice)."""
        base = Path(checkpoint_filename)
        for extension in (".pt", ".ckpt", ".safetensors"):
            candidate = base.with_name(base.stem + ".vae" + extension)
            if candidate.is_file():
                return VaeInfo(candidate.name, str(candidate.absolute()), self.hash_cache)
        return None


def v_prediction_hint(info: CheckpointInfo) -> bool | None:
    """True when the sidecar .yaml sets `parameterization: "v"`, False when it exists without it
    (LDM's default is eps), None when there is no readable yaml."""
    if not info.config:
        return None
    try:
        document = yaml.safe_load(Path(info.config).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as error:
        log.warning("Cannot read %s: %s", info.config, error)
        return None
    model = document.get("model") if isinstance(document, dict) else None
    params = model.get("params") if isinstance(model, dict) else None
    if not isinstance(params, dict):
        return False
    return str(params.get("parameterization", "eps")).strip().lower() == "v"
