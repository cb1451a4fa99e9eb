"""Progress in the UI: the Generate generator streams a rising progress bar and the live preview
of the running job; Interrupt / Skip act on the tab's job; the bar's text."""
from __future__ import annotations

import json
import re
import threading
from types import SimpleNamespace

from PIL import Image

from modules.jobs.queue import JobQueue
from modules.ui.common import generate_in_job
from modules.ui.progress import ProgressSnapshot, format_eta, interrupt_job, progress_bar_html, \
    skip_job

STEPS = 8


def stepping_work(release: threading.Event, step_done: threading.Event):
    """A job that advances one sampling step each time the test releases it, sets a live preview
    at step 3 and returns one image."""
    def work(progress):
        progress.begin(1)
        for step in range(1, STEPS + 1):
            release.wait(5)
            release.clear()
            progress.on_sampling_step(step, STEPS)
            if step == 3:
                progress.set_current_image(Image.new("RGB", (8, 8), (200, 10, 10)))
            step_done.set()
        image = Image.new("RGB", (16, 16))
        return SimpleNamespace(images=[image], infotexts=["done\nSteps: 8"],
                               js=lambda: json.dumps({"seed": 1}))
    return work


def percent_of(bar_html: str) -> float:
    return float(re.search(r"width:([\d.]+)%", bar_html).group(1))


def test_generator_yields_a_rising_progress_and_the_live_preview():
    queue = JobQueue()
    release, step_done = threading.Event(), threading.Event()
    ctx = SimpleNamespace(jobs=queue)
    try:
        updates = generate_in_job(ctx, "txt2img", stepping_work(release, step_done),
                                  poll_seconds=0.01)
        percents, previews = [], []
        for update in updates:
            *results, task_id, bar, preview = update
            if bar:                                  # a progress update while running
                percents.append(percent_of(bar))
                if isinstance(preview, Image.Image):
                    previews.append(preview)
                step_done.clear()
                release.set()                        # let the job do one more step
                step_done.wait(5)
        *results, task_id, bar, preview = update    # the last update: the result
        assert [image.size for image in results[0]] == [(16, 16)] and results[3] == ""
        assert task_id.startswith("task(txt2img-") and bar == "" and preview is None
        assert percents == sorted(percents) and percents[-1] > 50
        assert len(set(percents)) >= 3               # it really rose while the job ran
        assert len(previews) == 1 and previews[0].getpixel((0, 0)) == (200, 10, 10)
    finally:
        queue.shutdown()


def test_failed_job_shows_its_error_in_the_tab():
    queue = JobQueue()
    try:
        def broken(progress):
            raise FileNotFoundError("Put a checkpoint into models/Stable-diffusion")
        updates = list(generate_in_job(SimpleNamespace(jobs=queue), "txt2img", broken,
                                       poll_seconds=0.01))
        images, info, _, error_html, _, bar, _ = updates[-1]
        assert images == [] and info == "" and bar == ""
        assert "FileNotFoundError: Put a checkpoint into models/Stable-diffusion" in error_html
    finally:
        queue.shutdown()


def test_interrupt_and_skip_act_on_the_tabs_job():
    queue = JobQueue()
    started, finish = threading.Event(), threading.Event()
    try:
        def blocking(progress):
            started.set()
            finish.wait(5)
            return progress.interrupted, progress.skipped
        running = queue.submit("txt2img", blocking)
        waiting = queue.submit("txt2img", lambda progress: "ran")
        started.wait(5)
        assert skip_job(queue, running.id) and running.progress.skipped
        assert interrupt_job(queue, waiting.id)          # queued: cancelled, never runs
        assert waiting.state == "cancelled"
        assert interrupt_job(queue, running.id)
        finish.set()
        assert running.wait(5) == (True, True)
        assert not interrupt_job(queue, running.id)      # finished: nothing to do
    finally:
        queue.shutdown()


def test_progress_bar_text():
    running = ProgressSnapshot(fraction=0.25, eta_seconds=75.4, queue_position=0,
                               textinfo=None, preview=None, preview_id=0)
    html = progress_bar_html(running)
    assert "25% ETA: 1m 15s" in html and percent_of(html) == 25.0
    queued = ProgressSnapshot(fraction=0.0, eta_seconds=None, queue_position=2,
                              textinfo=None, preview=None, preview_id=-1)
    assert "In queue: 2" in progress_bar_html(queued)
    assert progress_bar_html(None) == ""
    assert (format_eta(None), format_eta(9.6), format_eta(3725)) == ("", "10s", "1h 02m 05s")
