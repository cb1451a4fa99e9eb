"""The web UI in front of a Redis queue (`--queue` with `--local-worker`): the txt2img tab's
request travels through Redis to the worker as an API job; the tab shows the queue's progress,
the image and its infotext, and Interrupt reaches the job on the worker."""
from __future__ import annotations

import io

import pytest
import redis
from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import (UI_TIMEOUT_MS, VIEWPORT, interrupt_a_long_txt2img,
                                    ConsoleErrors, browser_unavailable_reason,
                                    download_gallery_image, fill_small_generation,
                                    generate_and_wait, open_ui, wait_for_gallery_images,
                                    write_tiny_data_dir)
from tests.redis_server import start_redis
from tests.server_process import start_app_server, stop_app_server


@pytest.fixture(scope="module")
def queue_app(tmp_path_factory):
    reason = browser_unavailable_reason()
    if reason:
        pytest.skip(reason)
    redis_server = start_redis(tmp_path_factory.mktemp("redis"))
    data_dir = tmp_path_factory.mktemp("queue-app")
    write_tiny_data_dir(data_dir)
    server = start_app_server(data_dir, args=("--api", "--queue", redis_server.url,
                                              "--local-worker", "--worker-name", "ui-worker"))
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield server, client
    client.close()
    stop_app_server(server)
    redis_server.stop()


@pytest.fixture
def queue_page(browser, queue_app):
    server, _ = queue_app
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    console = ConsoleErrors().attach(page)
    open_ui(page, server.base_url)
    yield page
    context.close()
    assert not console.errors, "browser console errors:\n" + "\n".join(console.errors)


def queued_txt2img_jobs(client) -> list[dict]:
    ids = client.zrange("sd:index", 0, -1)
    return [client.hgetall(f"sd:job:{job_id}") for job_id in ids
            if client.hget(f"sd:job:{job_id}", "kind") == "txt2img"]


def test_generate_goes_through_the_queue(queue_page, queue_app):
    _, client = queue_app
    before = len(queued_txt2img_jobs(client))
    fill_small_generation(queue_page, "txt2img", "a queued cat", steps=3, seed=4321)
    info = generate_and_wait(queue_page, "txt2img", expected_in_info="Seed: 4321")
    assert info.splitlines()[0] == "a queued cat" and "Steps: 3" in info
    assert wait_for_gallery_images(queue_page, "txt2img") == [(64, 64)]
    downloaded = Image.open(io.BytesIO(download_gallery_image(queue_page, "txt2img")))
    assert downloaded.size == (64, 64) and downloaded.info["parameters"] == info
    jobs = queued_txt2img_jobs(client)
    assert len(jobs) == before + 1
    assert jobs[-1]["state"] == "done" and jobs[-1]["worker"] == "ui-worker"


def test_interrupt_reaches_the_job_on_the_worker(queue_page, queue_app):
    _, client = queue_app
    percents = interrupt_a_long_txt2img(queue_page)
    assert percents and max(percents) < 60, percents
    # the job the worker ran ended early and kept its image
    last = queued_txt2img_jobs(client)[-1]
    assert last["state"] == "done" and last["worker"] == "ui-worker"
