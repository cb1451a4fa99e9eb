"""The typed settings registry (A1111's `shared.opts`), persisted to config.json atomically.

Definitions come from `option_defs.default_option_definitions()`; extensions add theirs with
`add_option`. Only values that were set are written to `config.json` (the rest follow the
defaults); keys the file holds that no one has registered (yet) are kept, so an extension that
registers them later finds its values.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

OnChange = Callable[[], None]


@dataclass
class OptionInfo:
    """One setting: default, how the UI shows it, and how infotext / the API relate to it."""
    default: Any = None
    label: str = ""
    component: str = "textbox"   # textbox / slider / checkbox / dropdown / radio / number / checkboxgroup …
    component_args: dict | None = None
    choices: list | Callable[[], list] | None = None
    section: tuple[str, str] = ("other", "Other")
    infotext: str | None = None
    restrict_api: bool = False   # the API may neither change nor (in A1111) see it changed
    validate: Callable[[Any], Any] | None = None   # returns the value to store or raises ValueError
    onchange: OnChange | None = None
    comment: str = ""
    key: str = ""                # set by the registry

    def choice_list(self) -> list | None:
        return self.choices() if callable(self.choices) else self.choices


_TRUE_WORDS = {"true", "1", "yes", "on"}
_FALSE_WORDS = {"false", "0", "no", "off", ""}


def coerce_value(info: OptionInfo, value: Any) -> Any:
    """`value` converted to the type of the option's default where A1111 would accept it
    (JSON clients send "7" or 7.0 for ints), else ValueError naming the option."""
    default = info.default
    name = info.key or info.label

    def fail() -> ValueError:
        return ValueError(f"setting '{name}' expects {type(default).__name__}, got {value!r}")

    if default is None or value is None:
        coerced = value
    elif isinstance(default, bool):
        if isinstance(value, bool):
            coerced = value
        elif isinstance(value, (int, float)) and value in (0, 1):
            coerced = bool(value)
        elif isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
            coerced = value.strip().lower() in _TRUE_WORDS
        else:
            raise fail()
    elif isinstance(default, int):
        coerced = _to_int(value, fail)
    elif isinstance(default, float):
        if isinstance(value, bool):
            raise fail()
        try:
            coerced = float(value)
        except (TypeError, ValueError):
            raise fail() from None
    elif isinstance(default, str):
        if isinstance(value, str):
            coerced = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            coerced = str(value)
        else:
            raise fail()
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            coerced = list(value)
        elif isinstance(value, str):
            coerced = [part.strip() for part in value.split(",") if part.strip()]
        else:
            raise fail()
    elif isinstance(default, dict):
        if not isinstance(value, dict):
            raise fail()
        coerced = value
    else:
        coerced = value

    choices = info.choices if isinstance(info.choices, list) else None
    if choices and isinstance(coerced, str) and coerced not in choices:
        raise ValueError(f"setting '{name}': {coerced!r} is not one of {choices}")
    if info.validate is not None:
        coerced = info.validate(coerced)
    return coerced


def _to_int(value: Any, fail: Callable[[], ValueError]) -> int:
    if isinstance(value, bool):
        raise fail()
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise fail()
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise fail() from None
        if number.is_integer():
            return int(number)
    raise fail()


class Options:
    """Settings values over a registry of `OptionInfo`. Thread-safe; `save()` is atomic."""

    def __init__(self, definitions: dict[str, OptionInfo], config_path: Path | None = None, *,
                 frozen: bool = False) -> None:
        object.__setattr__(self, "_lock", threading.RLock())
        object.__setattr__(self, "_definitions", {})
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "_callbacks", {})
        object.__setattr__(self, "config_path", Path(config_path) if config_path else None)
        object.__setattr__(self, "frozen", frozen)
        for key, info in definitions.items():
            self.add_option(key, info)

    # ---- registry ----
    def add_option(self, key: str, info: OptionInfo) -> None:
        """Register (or re-register) an option; a value already loaded for it is re-validated."""
        with self._lock:
            info.key = key
            self._definitions[key] = info
            if info.onchange is not None:
                self._callbacks.setdefault(key, []).append(info.onchange)
            if key in self._values:
                try:
                    self._values[key] = coerce_value(info, self._values[key])
                except ValueError as error:
                    log.warning("Ignoring stored value of %s: %s", key, error)
                    del self._values[key]

    def onchange(self, key: str, callback: OnChange) -> None:
        if key not in self._definitions:
            raise KeyError(key)
        with self._lock:
            self._callbacks.setdefault(key, []).append(callback)

    def info(self, key: str) -> OptionInfo:
        return self._definitions[key]

    @property
    def data_labels(self) -> dict[str, OptionInfo]:
        """A1111's name for the definitions (read-only copy)."""
        return dict(self._definitions)

    def infotext_to_option(self) -> dict[str, str]:
        """Infotext label ("Clip skip") → option key ("CLIP_stop_at_last_layers")."""
        return {info.infotext: key for key, info in self._definitions.items() if info.infotext}

    # ---- values ----
    def get(self, key: str) -> Any:
        with self._lock:
            if key in self._values:
                return self._values[key]
            if key in self._definitions:
                return self._definitions[key].default
        raise KeyError(key)

    def get_default(self, key: str) -> Any:
        return self._definitions[key].default

    @property
    def data(self) -> dict[str, Any]:
        """A1111's `opts.data`: the stored values (config.json and what was set since), which
        extensions read with `opts.data.get(key, default)`. Settings left at their default are
        not in it, as in A1111."""
        return self._values

    def __getattr__(self, name: str) -> Any:
        # only called for names that are not real attributes: `opts.samples_format`
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.get(name)
        except KeyError:
            raise AttributeError(f"no setting named '{name}'") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._definitions:
            self.set(name, value)
        else:
            object.__setattr__(self, name, value)

    def set(self, key: str, value: Any, *, is_api: bool = False, run_callbacks: bool = True) -> bool:
        """Change one setting (not saved; call `save()`). Returns True when the value changed.

        Unknown key → KeyError; a value that cannot be coerced → ValueError. API-restricted keys
        (when `is_api`) and every key while frozen are ignored (False), as A1111 does."""
        if key not in self._definitions:
            raise KeyError(key)
        info = self._definitions[key]
        if self.frozen or (is_api and info.restrict_api):
            return False
        new_value = coerce_value(info, value)
        with self._lock:
            had_value = key in self._values
            old_value = self.get(key)
            if old_value == new_value and type(old_value) is type(new_value):
                return False
            self._values[key] = new_value
            callbacks = list(self._callbacks.get(key, ())) if run_callbacks else []
        try:
            for callback in callbacks:
                callback()
        except Exception:
            with self._lock:   # a failing callback (e.g. model load) leaves the old value in place
                if had_value:
                    self._values[key] = old_value
                else:
                    self._values.pop(key, None)
            raise
        return True

    def data_dict(self) -> dict[str, Any]:
        """Every registered option → its value or default (GET /sdapi/v1/options)."""
        with self._lock:
            return {key: self._values.get(key, info.default) for key, info in self._definitions.items()}

    @contextlib.contextmanager
    def override(self, values: dict[str, Any], *, is_api: bool = False) -> Iterator[None]:
        """Temporarily apply `values` (per-request override_settings); restored on exit.
        Not saved, no onchange callbacks; unknown and (for the API) restricted keys are skipped."""
        previous: dict[str, tuple[bool, Any]] = {}
        try:
            with self._lock:
                for key, value in values.items():
                    info = self._definitions.get(key)
                    if info is None:
                        log.warning("override_settings: unknown setting %s ignored", key)
                        continue
                    if is_api and info.restrict_api:
                        continue
                    coerced = coerce_value(info, value)
                    previous.setdefault(key, (key in self._values, self._values.get(key)))
                    self._values[key] = coerced
            yield
        finally:
            with self._lock:
                for key, (had_value, old_value) in previous.items():
                    if had_value:
                        self._values[key] = old_value
                    else:
                        self._values.pop(key, None)

    # ---- persistence ----
    def save(self, path: Path | None = None) -> None:
        """Write config.json atomically: a temp file next to it, then os.replace."""
        target = Path(path) if path else self.config_path
        if target is None:
            return
        with self._lock:
            payload = json.dumps(self._values, indent=4, ensure_ascii=False, default=str)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(target.name + ".tmp")
        temp.write_text(payload, encoding="utf-8")
        os.replace(temp, target)

    def load(self, path: Path | None = None) -> None:
        """Read config.json. A corrupt file is renamed aside and defaults are used (warning logged)."""
        source = Path(path) if path else self.config_path
        if source is None or not source.exists():
            return
        try:
            stored = json.loads(source.read_text(encoding="utf-8"))
            if not isinstance(stored, dict):
                raise ValueError("top level is not an object")
        except (ValueError, UnicodeDecodeError) as error:
            aside = source.with_name(f"{source.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}.bak")
            os.replace(source, aside)
            log.warning("Settings file %s is corrupt (%s); moved it to %s and using defaults",
                        source, error, aside)
            return
        values: dict[str, Any] = {}
        for key, value in stored.items():
            info = self._definitions.get(key)
            if info is None:
                values[key] = value     # kept for an extension that registers it later
                continue
            try:
                values[key] = coerce_value(info, value)
            except ValueError as error:
                log.warning("Ignoring bad value in %s: %s", source, error)
        with self._lock:
            self._values.clear()
            self._values.update(values)
