"""Screenshots of the txt2img and img2img tabs for the README (not a test).

    venv/bin/python -m tests.browser.make_screenshots [--out docs/screenshots]

Starts the real app on the shipped demo model (models/Stable-diffusion/demo-shapes.safetensors;
without it, on a tiny random-weight checkpoint whose images are noise), generates once in each tab
and saves `txt2img.png` and `img2img.png`.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw
from playwright.sync_api import sync_playwright

from playwright.sync_api import expect

from tests.browser.conftest import GENERATION_TIMEOUT_MS, ROOT, VIEWPORT, \
    browser_unavailable_reason, ConsoleErrors, fill_small_generation, launch_chromium, open_tab, \
    open_ui, set_number, start_app_server, stop_app_server, wait_for_gallery_images, \
    write_tiny_data_dir

SCREENSHOT_SIZE = 128     # generated image size: small enough for 2 CPU cores, visible in the shot
SCREENSHOT_STEPS = 6
DEMO_CHECKPOINT = ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"
DEMO_SIZE, DEMO_STEPS, DEMO_BATCH = 64, 20, 4
MAX_SCREENSHOT_HEIGHT = 1800


def sample_picture(path: Path) -> Path:
    """The picture uploaded to img2img: a red square on blue."""
    image = Image.new("RGB", (SCREENSHOT_SIZE, SCREENSHOT_SIZE), (30, 60, 200))
    ImageDraw.Draw(image).rectangle((32, 32, 95, 95), fill=(220, 30, 30))
    image.save(path)
    return path


def capture(page, tab_id: str, prompt: str, destination: Path, *, demo: bool) -> None:
    size, steps = (DEMO_SIZE, DEMO_STEPS) if demo else (SCREENSHOT_SIZE, SCREENSHOT_STEPS)
    fill_small_generation(page, tab_id, prompt, steps=steps, seed=1234, size=(size, size))
    if demo:
        set_number(page, f"{tab_id}_batch_size", DEMO_BATCH)
    page.locator(f"#{tab_id}_generate").click()
    info = page.locator(f"#html_info_{tab_id}")
    expect(info).to_contain_text(f"Steps: {steps}", timeout=GENERATION_TIMEOUT_MS)
    wait_for_gallery_images(page, tab_id, count=DEMO_BATCH + 1 if demo else 1)
    page.mouse.move(0, 0)   # no hover highlight in the picture
    # down to the infotext under the gallery, so the picture shows the result and its parameters
    info_box = page.locator(f"#html_info_{tab_id}").bounding_box()
    height = min(MAX_SCREENSHOT_HEIGHT,
                 max(VIEWPORT["height"], int(info_box["y"] + info_box["height"]) + 60))
    page.screenshot(path=str(destination), full_page=True,
                    clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})
    shrink_png(destination)


def shrink_png(path: Path) -> None:
    """A 256-colour palette keeps the UI crisp and the noisy image small (committed files stay
    well under 500 KB)."""
    with Image.open(path) as screenshot:
        palette = screenshot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    palette.save(path, optimize=True)


def make_screenshots(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="webui-screenshots-") as temp:
        data_dir = Path(temp)
        demo = DEMO_CHECKPOINT.is_file()
        if demo:
            target = data_dir / "models" / "Stable-diffusion" / DEMO_CHECKPOINT.name
            target.parent.mkdir(parents=True)
            shutil.copyfile(DEMO_CHECKPOINT, target)
        else:
            write_tiny_data_dir(data_dir)
        server = start_app_server(data_dir)
        try:
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                page = browser.new_page(viewport=VIEWPORT)
                console = ConsoleErrors().attach(page)
                open_ui(page, server.base_url)
                capture(page, "txt2img",
                        "a large red circle in the center, on a blue background" if demo
                        else "a lighthouse on a cliff at sunset, oil painting",
                        out_dir / "txt2img.png", demo=demo)
                open_tab(page, "img2img")
                page.locator("#img2img_image input[type=file]").set_input_files(
                    str(sample_picture(data_dir / "upload.png")))
                page.locator("#img2img_image img").wait_for(state="visible")
                set_number(page, "img2img_denoising_strength", 0.6)
                capture(page, "img2img",
                        "a large yellow square in the center, on a blue background" if demo
                        else "a red box on a blue table, watercolor",
                        out_dir / "img2img.png", demo=demo)
                browser.close()
        except Exception:
            print(server.log_text()[-4000:], file=sys.stderr)
            raise
        finally:
            stop_app_server(server)
    if console.errors:
        raise RuntimeError("browser console errors:\n" + "\n".join(console.errors))
    return [out_dir / "txt2img.png", out_dir / "img2img.png"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    reason = browser_unavailable_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    for path in make_screenshots(args.out):
        print(f"{path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
