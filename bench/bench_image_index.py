"""Benchmark: the image browser's index on 10,000 pictures.

    venv/bin/python bench/bench_image_index.py [--count 10000]

Writes `count` small PNGs with A1111 infotexts into a temporary outputs folder, then reports the
first scan (reading every file's infotext), a rescan with nothing changed, and the listing calls
the tab makes (first page, last page, a prompt word, a seed, favourites), each the median of 20.
Not a test.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modules.app.image_index import ImageIndex  # noqa: E402
from tests.app.test_image_index import WORDS, write_png  # noqa: E402


def timed(call, repeat: int = 20) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        outputs = Path(folder) / "outputs"
        started = time.perf_counter()
        for number in range(args.count):
            day = f"2026-12-{1 + number % 28:02d}"
            write_png(outputs / "txt2img-images" / day / f"{number:05d}-{number}.png",
                      f"a {WORDS[number % 3]} number {number}", seed=number,
                      mtime=1_700_000_000 + number)
        print(f"wrote {args.count} pictures in {time.perf_counter() - started:.1f} s")
        index = ImageIndex(Path(folder) / "index.sqlite3", outputs)
        started = time.perf_counter()
        added, _ = index.scan()
        print(f"first scan: {added} indexed in {time.perf_counter() - started:.2f} s")
        started = time.perf_counter()
        index.scan()
        print(f"rescan, nothing changed: {(time.perf_counter() - started) * 1000:.0f} ms")
        index.set_favourite("txt2img-images/2026-12-02/00001-1.png", True)
        for label, call in (
                ("first page (36, newest first)", lambda: index.query()),
                ("last page", lambda: index.query(page=10_000)),
                ("prompt word 'owl'", lambda: index.query(text="owl")),
                ("seed 4321", lambda: index.query(seed=4321)),
                ("favourites", lambda: index.query(favourites=True))):
            print(f"{label}: {timed(call):.2f} ms")
        index.close()


if __name__ == "__main__":
    main()
