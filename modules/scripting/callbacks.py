"""The callback registry behind A1111's `modules.script_callbacks` (a1111-compat.md §8.4).

Extensions register functions by kind (`app_started`, `ui_settings`, `cfg_denoiser`, …); the app
calls `run(kind, *args)` at the matching moment. Every callback runs on its own: one that raises
is logged with the script that registered it and its traceback, recorded in `failures`, and the
others (and the request) go on. The registry is an object the app owns and passes on; the compat
module is a thin view over the one in use.
"""
from __future__ import annotations

import contextlib
import logging
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

#: every callback kind of A1111 1.10 (register function `on_<kind>`)
CALLBACK_KINDS: tuple[str, ...] = (
    "app_started", "before_reload", "model_loaded", "ui_tabs", "ui_train_tabs", "ui_settings",
    "before_image_saved", "image_saved", "extra_noise", "cfg_denoiser", "cfg_denoised",
    "cfg_after_cfg", "before_component", "after_component", "image_grid", "infotext_pasted",
    "script_unloaded", "before_ui", "list_optimizers", "list_unets", "before_token_counter",
)
BUILTIN_SCRIPT = "<built-in>"


@dataclass
class CallbackEntry:
    kind: str
    callback: Callable[..., Any]
    script: str             # the file that registered it (A1111's `script` field)
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or f"{self.script}: {getattr(self.callback, '__qualname__', self.callback)}"


@dataclass
class CallbackFailure:
    kind: str
    label: str
    message: str            # "<script>: <ExceptionClass>: <text>"
    traceback: str


@dataclass
class CallbackRegistry:
    entries: dict[str, list[CallbackEntry]] = field(
        default_factory=lambda: {kind: [] for kind in CALLBACK_KINDS})
    failures: list[CallbackFailure] = field(default_factory=list)
    #: the script file being loaded now: callbacks registered meanwhile belong to it
    current_script: str = BUILTIN_SCRIPT

    # -- registering ---------------------------------------------------------------------------
    def add(self, kind: str, callback: Callable[..., Any], *, name: str | None = None) -> None:
        if kind not in self.entries:
            raise ValueError(f"unknown callback kind {kind!r}")
        if not callable(callback):
            raise TypeError(f"on_{kind}: {callback!r} is not callable")
        self.entries[kind].append(CallbackEntry(kind, callback, self.current_script, name))

    @contextlib.contextmanager
    def loading(self, script: str) -> Iterator[None]:
        """Callbacks registered inside belong to `script`."""
        previous, self.current_script = self.current_script, script
        try:
            yield
        finally:
            self.current_script = previous

    def remove_script(self, script: str) -> None:
        for kind, entries in self.entries.items():
            self.entries[kind] = [entry for entry in entries if entry.script != script]

    def remove_function(self, callback: Callable[..., Any]) -> None:
        for kind, entries in self.entries.items():
            self.entries[kind] = [entry for entry in entries if entry.callback != callback]

    def clear(self) -> None:
        for entries in self.entries.values():
            entries.clear()

    # -- running -------------------------------------------------------------------------------
    def callbacks(self, kind: str) -> list[CallbackEntry]:
        return list(self.entries[kind])

    def run(self, kind: str, *args: Any) -> list[Any]:
        """Call every `kind` callback with `args`; the results of those that did not raise."""
        results = []
        for entry in self.callbacks(kind):
            try:
                results.append(entry.callback(*args))
            except Exception as error:  # noqa: BLE001 - one extension must not break the rest
                self.report(kind, entry, error)
        return results

    def report(self, kind: str, entry: CallbackEntry, error: BaseException) -> CallbackFailure:
        failure = CallbackFailure(kind, entry.label,
                                  f"{entry.script}: {type(error).__name__}: {error}",
                                  "".join(traceback.format_exception(error)))
        log.error("Error running on_%s callback %s\n%s", kind, entry.label, failure.traceback)
        self.failures.append(failure)
        del self.failures[:-100]       # the most recent ones are enough to show
        return failure
