"""Progress of a running job in the UI: a progress bar with ETA and the live preview image, fed by
polling the job's JobProgress from a Gradio generator function, plus Interrupt / Skip that act
on the tab's own job."""
from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import gradio as gr

from modules.jobs.queue import Job, JobCancelled

if TYPE_CHECKING:
    from modules.jobs.queue import JobQueue

log = logging.getLogger(__name__)

PROGRESS_POLL_SECONDS = 0.25


@dataclass
class ProgressSnapshot:
    """What the UI shows about a job at one moment."""
    fraction: float
    eta_seconds: float | None
    queue_position: int | None     # 1-based while waiting, 0 while running, None when finished
    textinfo: str | None
    preview: Any                   # a new live-preview image, or None when there is no new one
    preview_id: int


@dataclass
class ProgressView:
    """The components of one tab's progress display."""
    task_id: gr.Textbox           # hidden: id of the tab's last job, for Interrupt / Skip
    bar: gr.HTML
    preview: gr.Image

    @property
    def outputs(self) -> list[Any]:
        return [self.task_id, self.bar, self.preview]


def progress_view(tab_id: str) -> ProgressView:
    task_id = gr.Textbox(visible=False, elem_id=f"{tab_id}_task_id")
    bar = gr.HTML(elem_id=f"{tab_id}_progress")
    preview = gr.Image(label="Live preview", show_label=False, type="pil", interactive=False,
                       visible=True, elem_id=f"{tab_id}_live_preview", height=256)
    return ProgressView(task_id, bar, preview)


def snapshot_job(job: Job, last_preview_id: int) -> ProgressSnapshot:
    """Read the job's progress; `preview` is set only when a newer preview than
    `last_preview_id` exists, so the browser is not sent the same image again."""
    progress = job.progress
    position = job.queue_position()
    fraction = progress.progress_fraction() if position == 0 else 0.0
    preview_id = int(getattr(progress, "id_live_preview", 0) or 0)
    image = getattr(progress, "current_image", None)
    new_preview = image if (position == 0 and image is not None
                            and preview_id != last_preview_id) else None
    return ProgressSnapshot(
        fraction=fraction, eta_seconds=progress.eta_seconds() if position == 0 else None,
        queue_position=position, textinfo=getattr(progress, "textinfo", None),
        preview=new_preview, preview_id=preview_id if new_preview is not None else last_preview_id)


def follow_job(job: Job, *, poll_seconds: float = PROGRESS_POLL_SECONDS,
               ) -> Iterator[ProgressSnapshot]:
    """Snapshots of `job` every `poll_seconds` until it finishes (the first one at once)."""
    last_preview_id = -1
    while not job.finished:
        snapshot = snapshot_job(job, last_preview_id)
        last_preview_id = snapshot.preview_id
        yield snapshot
        time.sleep(poll_seconds)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0, int(round(seconds)))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def progress_bar_html(snapshot: ProgressSnapshot | None) -> str:
    """A1111-like progress bar: percentage and ETA, or the place in the queue while waiting."""
    if snapshot is None:
        return ""
    if snapshot.queue_position:
        label = f"In queue: {snapshot.queue_position}"
        percent = 0.0
    else:
        percent = max(0.0, min(1.0, snapshot.fraction)) * 100
        eta = format_eta(snapshot.eta_seconds)
        label = f"{percent:.0f}%" + (f" ETA: {eta}" if eta else "")
    text = html.escape(label + (f" — {snapshot.textinfo}" if snapshot.textinfo else ""))
    # inline styles: the bar must be visible without a stylesheet
    return (f"<div class='progressDiv' style='position:relative;background:#8884;"
            f"border-radius:6px;overflow:hidden;height:1.6em'>"
            f"<div class='progress' style='width:{percent:.1f}%;height:100%;"
            f"background:#f97316'></div><span style='position:absolute;left:0.6em;top:0.15em'>"
            f"{text}</span></div>")


def stream_job_progress(job: Job, result_count: int, *,
                        poll_seconds: float = PROGRESS_POLL_SECONDS) -> Iterator[tuple[Any, ...]]:
    """Yield Gradio updates while `job` runs: `result_count` untouched result outputs followed by
    the ProgressView outputs (task id, progress bar, live preview)."""
    keep_results = tuple(gr.skip() for _ in range(result_count))
    for snapshot in follow_job(job, poll_seconds=poll_seconds):
        preview = snapshot.preview if snapshot.preview is not None else gr.skip()
        yield keep_results + (job.id, progress_bar_html(snapshot), preview)


def finished_outputs(job_id: str) -> tuple[Any, ...]:
    """The ProgressView outputs once the job ended: bar and preview cleared."""
    return job_id, "", None


def interrupt_job(jobs: "JobQueue", task_id: str | None) -> bool:
    """Interrupt the tab's job: a queued one is cancelled, a running one stops at its next step
    and returns what is finished. Without a known id the running job is interrupted (A1111)."""
    job = jobs.get(task_id) if task_id else None
    log.info("Interrupt requested from the UI for %s", task_id or "the running job")
    if job is None:
        return jobs.interrupt_current()
    if job.finished:
        return False
    if jobs.cancel(job.id):
        return True
    job.progress.interrupt()
    return True


def skip_job(jobs: "JobQueue", task_id: str | None) -> bool:
    """Skip the current image batch of the tab's running job (or of the running job)."""
    job = jobs.get(task_id) if task_id else None
    if job is None:
        return jobs.skip_current()
    if job.finished:
        return False
    job.progress.skip()
    return True


def wait_for_result(job: Job) -> tuple[Any, BaseException | None]:
    """(result, None) or (None, the error) of a finished job."""
    try:
        return job.wait(), None
    except JobCancelled as error:
        return None, error
    except Exception as error:  # noqa: BLE001 - shown to the user by the caller
        return None, error
