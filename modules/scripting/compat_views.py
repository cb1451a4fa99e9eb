"""The objects behind A1111's `modules.shared` names that are more than a re-export: the
A1111-shaped OptionInfo extensions construct, and `state`, a view of the running job."""
from __future__ import annotations

from typing import Any, Callable

from modules.app.options import OptionInfo as _OptionInfo

# gradio component classes by name → the settings tab's component kinds
_COMPONENT_KINDS = {"Slider": "slider", "Checkbox": "checkbox", "Dropdown": "dropdown",
                    "Radio": "radio", "Number": "number", "CheckboxGroup": "checkboxgroup",
                    "ColorPicker": "colorpicker", "Textbox": "textbox", "Code": "textbox"}


def _component_kind(component: Any, default: Any) -> str:
    if component is None:
        return "checkbox" if isinstance(default, bool) else "textbox"
    name = getattr(component, "__name__", None) or type(component).__name__
    return _COMPONENT_KINDS.get(name, "textbox")


class OptionInfo(_OptionInfo):
    """A1111's `shared.OptionInfo(default, label, component, component_args, onchange,
    section, refresh, comment_before, comment_after, infotext, restrict_api, category_id)` with
    its chaining helpers (.info(), .html(), .link(), .needs_reload_ui(), .needs_restart())."""

    def __init__(self, default: Any = None, label: str = "", component: Any = None,
                 component_args: Any = None, onchange: Callable[[], None] | None = None,
                 section: tuple[str, str] | None = None, refresh: Any = None,
                 comment_before: str = "", comment_after: str = "", infotext: str | None = None,
                 restrict_api: bool = False, category_id: str | None = None) -> None:
        args = component_args() if callable(component_args) else component_args
        args = dict(args or {})
        choices = args.pop("choices", None)
        super().__init__(default, label, _component_kind(component, default), args or None,
                         choices=choices, section=section or ("other", "Other"),
                         infotext=infotext, restrict_api=restrict_api,
                         onchange=(lambda *_: onchange()) if onchange is not None else None,
                         comment=" ".join(part for part in (comment_before, comment_after)
                                          if part))
        self.refresh = refresh
        self.category_id = category_id
        self.do_not_save = False

    def info(self, text: str) -> "OptionInfo":
        self.comment = f"{self.comment} ({text})".strip()
        return self

    def html(self, text: str) -> "OptionInfo":
        self.comment = f"{self.comment} {text}".strip()
        return self

    def link(self, label: str, url: str) -> "OptionInfo":
        self.comment = f"{self.comment} [{label}]({url})".strip()
        return self

    def needs_reload_ui(self) -> "OptionInfo":
        return self.info("requires Reload UI")

    def needs_restart(self) -> "OptionInfo":
        return self.info("requires restart")


def options_section(section_identifier: tuple[str, str], options_dict: dict[str, OptionInfo],
                    ) -> dict[str, OptionInfo]:
    """A1111's helper: every option of `options_dict` in `section_identifier`."""
    for option in options_dict.values():
        option.section = section_identifier
    return options_dict


def _writable(name: str, default: Any) -> property:
    """A state field scripts read and write: the running job's progress field of that name."""
    return property(lambda self: self._read(name, default),
                    lambda self, value: self._write(name, value))


class JobStateView:
    """`shared.state` (A1111's State) over the job queue: what the running job is doing, and
    interrupt / skip for it. Scripts read `state.interrupted` / `state.skipped` in their loops."""

    def __init__(self, jobs: Any = None) -> None:
        self._jobs = jobs

    def _progress(self) -> Any:
        job = self._jobs.current() if self._jobs is not None else None
        return job.progress if job is not None else None

    def _read(self, name: str, default: Any) -> Any:
        progress = self._progress()
        return getattr(progress, name, default) if progress is not None else default

    def _write(self, name: str, value: Any) -> None:
        progress = self._progress()
        if progress is not None:
            setattr(progress, name, value)

    interrupted = property(lambda self: bool(self._read("interrupted", False)))
    skipped = property(lambda self: bool(self._read("skipped", False)))
    stopping_generation = property(lambda self: bool(self._read("stopping_generation", False)))
    # scripts that run many jobs (X/Y/Z plot and its kin) set these to show their progress
    job = _writable("job", "")
    job_no = _writable("job_no", 0)
    job_count = _writable("job_count", 0)
    textinfo = _writable("textinfo", None)
    sampling_step = property(lambda self: self._read("sampling_step", 0))
    sampling_steps = property(lambda self: self._read("sampling_steps", 0))
    current_image = property(lambda self: self._read("current_image", None))

    def interrupt(self) -> None:
        progress = self._progress()
        if progress is not None:
            progress.interrupt()

    def skip(self) -> None:
        progress = self._progress()
        if progress is not None:
            progress.skip()

    def nextjob(self) -> None:
        progress = self._progress()
        if progress is not None:
            progress.next_job()

    def begin(self, job: str = "(unknown)") -> None:
        """The job queue begins and ends jobs; kept for scripts that call it."""

    def end(self) -> None: ...

    def set_current_image(self) -> None: ...
