"""Browser tests: the real app (`launch.py`, UI + API, a tiny SD1 checkpoint) driven by Debian's
headless Chromium through Playwright, as a person would use it.

Every test gets a fresh page; a test fails when the browser console reports an error, and a
screenshot of a failed test is written to `test-screenshots/<test>.png`.
The server and browser helpers here are shared with `make_screenshots.py`.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.server_process import ROOT, AppServer, start_app_server, stop_app_server  # noqa: F401

CHROMIUM_PATH = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1100}
FAILURE_SCREENSHOTS = ROOT / "test-screenshots"
GENERATION_TIMEOUT_MS = 120_000
UI_TIMEOUT_MS = 30_000      # page actions and expect() assertions (Playwright's default: 5 s)
CHECKPOINT_NAME = "tiny.safetensors"
CONTROLNET_FILE = "control_tiny_canny.safetensors"

# Errors Gradio's client logs when its open event stream is cut because the page itself is being
# reloaded or left (the test asked for that): not a fault of the app. Ignored only during such a
# navigation (see ConsoleErrors.navigating).
UNLOAD_CONSOLE_ERRORS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^AbortError: signal is aborted without reason"),
    re.compile(r"^AbortError: BodyStreamBuffer was aborted"),   # the event stream, cut by unload
    re.compile(r"^Unexpected error Connection errored out"),
)


def write_tiny_data_dir(data_dir: Path) -> Path:
    """A data dir holding one tiny random-weight SD1 checkpoint (real key names) and a tiny
    ControlNet (canny by its name) that fits it."""
    from tests.engine.tiny_checkpoints import write_tiny_checkpoint

    from tests.engine.tiny_checkpoints import write_tiny_controlnet

    checkpoint = data_dir / "models" / "Stable-diffusion" / CHECKPOINT_NAME
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    write_tiny_checkpoint(checkpoint, "sd1")
    controlnet = data_dir / "models" / "ControlNet" / CONTROLNET_FILE
    controlnet.parent.mkdir(parents=True, exist_ok=True)
    write_tiny_controlnet(controlnet, "sd1", seed=4)
    return checkpoint


def browser_unavailable_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: run ./run_tests.sh (installs requirements-test.txt)"
    if not CHROMIUM_PATH.exists():
        return (f"no Chromium at {CHROMIUM_PATH}: install Debian's package "
                f"(sudo apt-get install -y chromium) or set CHROMIUM_PATH")
    return None


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM_PATH), args=BROWSER_ARGS,
                                      headless=True)


class ConsoleErrors:
    """Collects a page's console errors and uncaught exceptions."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._navigating = False

    def attach(self, page) -> "ConsoleErrors":
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        return self

    def _on_console(self, message) -> None:
        if message.type != "error":
            return
        if self._navigating and any(p.search(message.text) for p in UNLOAD_CONSOLE_ERRORS):
            return
        self.errors.append(f"console.error: {message.text}")

    @contextmanager
    def navigating(self) -> Iterator[None]:
        """While the test reloads or leaves the page on purpose."""
        self._navigating = True
        try:
            yield
        finally:
            self._navigating = False


def wait_until_ready(page) -> None:
    """Wait until the txt2img tab can be used and the page-load refresh has set every control
    to its stored value (typing before that would be overwritten by it)."""
    page.locator("#txt2img_prompt textarea").wait_for(state="visible")
    page.wait_for_function("() => document.documentElement.dataset.storedValuesShown === '1'")


def open_ui(page, base_url: str) -> None:
    """Load the UI and wait until it can be used."""
    page.goto(base_url + "/")
    wait_until_ready(page)


def reload_ui(page, console: ConsoleErrors) -> None:
    """Reload the page (F5) and wait until the UI can be used again."""
    with console.navigating():
        page.reload()
        wait_until_ready(page)


# -- actions a person takes in the UI ------------------------------------------------------------

def set_number(page, elem_id: str, value: float) -> None:
    """Type a value into a slider's number box (as a user does) and check the slider took it."""
    from playwright.sync_api import expect

    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    expect(page.locator(f"#{elem_id} input[type=range]")).to_have_value(str(value))


def choose_option(page, elem_id: str, option: str) -> None:
    """Open a dropdown and click one of its options."""
    from playwright.sync_api import expect

    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(page.locator(f"#{elem_id} input")).to_have_value(option)


def open_tab(page, tab_id: str) -> None:
    page.locator(f"#tab_{tab_id}-button").click()
    page.locator(f"#{tab_id}_prompt textarea").wait_for(state="visible")


def fill_small_generation(page, tab_id: str, prompt: str, *, steps: int = 3,
                          seed: int | None = None, size: tuple[int, int] = (64, 64)) -> None:
    """Prompt, a small size, few steps (and a fixed seed when given): a job the tiny model runs
    fast."""
    page.locator(f"#{tab_id}_prompt textarea").fill(prompt)
    set_number(page, f"{tab_id}_width", size[0])
    set_number(page, f"{tab_id}_height", size[1])
    set_number(page, f"{tab_id}_steps", steps)
    if seed is not None:
        page.locator(f"#{tab_id}_seed input").fill(str(seed))


def generate_and_wait(page, tab_id: str, *, expected_in_info: str) -> str:
    """Click Generate, wait for the infotext to show `expected_in_info` and for the gallery image
    to load; returns the infotext."""
    from playwright.sync_api import expect

    info = page.locator(f"#html_info_{tab_id}")
    page.locator(f"#{tab_id}_generate").click()
    expect(info).to_contain_text(expected_in_info, timeout=GENERATION_TIMEOUT_MS)
    wait_for_gallery_images(page, tab_id)
    return info.inner_text()


def wait_for_gallery_images(page, tab_id: str, count: int = 1) -> list[tuple[int, int]]:
    """Wait until the tab's gallery shows `count` loaded images; their natural sizes."""
    from playwright.sync_api import expect

    images = page.locator(f"#{tab_id}_gallery img")
    expect(images).to_have_count(count, timeout=GENERATION_TIMEOUT_MS)
    page.wait_for_function(
        "id => [...document.querySelectorAll(`#${id}_gallery img`)]"
        ".every(img => img.complete && img.naturalWidth > 0)", arg=tab_id,
        timeout=GENERATION_TIMEOUT_MS)
    return [tuple(size) for size in images.evaluate_all(
        "imgs => imgs.map(img => [img.naturalWidth, img.naturalHeight])")]


def interrupt_a_long_txt2img(page) -> list[int]:
    """Start a long txt2img (150 steps at 192x192: long enough that the click lands early even on
    a loaded machine), click Interrupt once the bar shows a percentage, wait for the image of the
    steps done; returns every percentage the progress bar showed."""
    from playwright.sync_api import expect

    fill_small_generation(page, "txt2img", "a long job", steps=150, seed=3, size=(192, 192))
    page.evaluate("""() => {
        window.progressTexts = [];
        const bar = document.querySelector('#txt2img_progress');
        new MutationObserver(() => window.progressTexts.push(bar.innerText))
            .observe(bar, {subtree: true, childList: true, characterData: true});
    }""")
    page.locator("#txt2img_generate").click()
    page.wait_for_function(
        "() => /([1-9]\\d*)% ETA/.test(document.querySelector('#txt2img_progress').innerText)",
        timeout=GENERATION_TIMEOUT_MS)
    page.locator("#txt2img_interrupt").click()
    expect(page.locator("#html_info_txt2img")).to_contain_text("Steps: 150",
                                                              timeout=GENERATION_TIMEOUT_MS)
    assert wait_for_gallery_images(page, "txt2img") == [(192, 192)]
    expect(page.locator("#txt2img_progress")).to_have_text("")
    return [int(match) for text in page.evaluate("() => window.progressTexts")
            for match in re.findall(r"(\d+)%", text)]


def download_gallery_image(page, tab_id: str, index: int = 0) -> bytes:
    """The file behind a gallery image, as the browser fetches it (what "save" gives a user)."""
    source = page.locator(f"#{tab_id}_gallery img").nth(index).get_attribute("src")
    response = page.request.get(source)
    assert response.ok, (source, response.status)
    return response.body()


# -- pytest fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def app_server(tmp_path_factory) -> Iterator[AppServer]:
    reason = browser_unavailable_reason()
    if reason:
        pytest.skip(reason)
    data_dir = tmp_path_factory.mktemp("browser-app")
    write_tiny_data_dir(data_dir)
    server = start_app_server(data_dir)
    yield server
    stop_app_server(server)


@pytest.fixture(scope="session")
def browser(app_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can see whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def save_failure_screenshot(page, test_name: str) -> Path:
    FAILURE_SCREENSHOTS.mkdir(exist_ok=True)
    # the folder ignores itself, so failure screenshots never end up in a commit
    (FAILURE_SCREENSHOTS / ".gitignore").write_text("*\n", encoding="utf-8")
    path = FAILURE_SCREENSHOTS / (re.sub(r"[^\w.-]+", "_", test_name) + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def console_errors() -> ConsoleErrors:
    """The console errors of the test's page (the page fixture fails the test on any)."""
    return ConsoleErrors()


@pytest.fixture
def page(browser, app_server, console_errors, request):
    """A fresh page with the UI loaded. Fails the test on browser-console errors and keeps a
    screenshot when the test failed."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    # generous waits: on a loaded 2-core machine a Gradio update can take seconds; a passing
    # test never waits the full time, it continues as soon as the DOM is in the expected state
    page.set_default_timeout(UI_TIMEOUT_MS)
    from playwright.sync_api import expect
    expect.set_options(timeout=UI_TIMEOUT_MS)
    console_errors.attach(page)
    open_ui(page, app_server.base_url)
    yield page
    call_report = getattr(request.node, "report_call", None)
    if (call_report is not None and call_report.failed) or console_errors.errors:
        save_failure_screenshot(page, request.node.name)
    context.close()
    assert not console_errors.errors, ("browser console errors:\n"
                                       + "\n".join(console_errors.errors))


@pytest.fixture
def sample_png(tmp_path) -> Path:
    """A 64x64 picture to upload: a red square on blue."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), (30, 60, 200))
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill=(220, 30, 30))
    path = tmp_path / "upload.png"
    image.save(path)
    return path

