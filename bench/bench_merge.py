"""Benchmark: the streaming checkpoint merger on two full-size SD1.5 checkpoints.

    venv/bin/python bench/bench_merge.py [--dtype F32|F16] [--no-reference] [--workdir DIR]

Two SD1.5-shaped checkpoints are written from `../shared/ref/sd15.json` as zero-filled sparse
safetensors files (every tensor is read and materialised as from a real 4 GB file, but they take
no disk space), then merged 7:3 by weighted sum into a third file, each merge in a fresh child
process so its peak RSS (ru_maxrss) is its own:
* ours: `CheckpointMerger.merge` (header plan, one tensor read / merged / written at a time);
* reference: what A1111's merger does (both state dicts loaded whole, merged in place, saved with
  safetensors' save_file), plus a sync so that both runs end with the file on disk.
The inputs are read once beforehand so that both runs find them in the page cache. Prints wall
time and peak RSS, and peak RSS as a ratio to one checkpoint's size (target <= 1.2).
Not a test.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OURS = """
import sys
from pathlib import Path
from modules.app.checkpoints import CheckpointRegistry, VaeRegistry
from modules.merger.request import MergeRequest
from modules.merger.service import CheckpointMerger
folder = Path(sys.argv[1])
checkpoints = CheckpointRegistry(folder)
checkpoints.refresh()
merger = CheckpointMerger(checkpoints, VaeRegistry(folder / "none"), folder)
merger.merge(MergeRequest("a.safetensors", "b.safetensors", multiplier=0.3, custom_name="ours",
                          add_merge_recipe=False))
"""

A1111_STYLE = """
import os
import sys
from pathlib import Path
from safetensors.torch import load_file, save_file
folder = Path(sys.argv[1])
theta_1 = load_file(str(folder / "b.safetensors"))
theta_0 = load_file(str(folder / "a.safetensors"))
for key in theta_0:
    if "model" in key and key in theta_1:
        theta_0[key] = (1 - 0.3) * theta_0[key] + 0.3 * theta_1[key]
del theta_1
save_file(theta_0, str(folder / "reference.safetensors"))
os.sync()   # on disk, as ours is when it returns (it fsyncs before the final rename)
"""


def run_child(code: str, folder: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of `code` run in a fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(folder)], cwd=ROOT, check=True)
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kib < before:
        raise RuntimeError("ru_maxrss of children went down")
    return elapsed, peak_kib * 1024


def read_through(path: Path) -> None:
    """Read a file once, so that both runs find it in the page cache: whichever ran first would
    otherwise pay for populating it (for these sparse files the kernel zero-fills every page,
    ~0.5 GB/s here, slower than the merge itself)."""
    with open(path, "rb") as handle:
        block = bytearray(64 * 2**20)
        while handle.readinto(block):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="F32", choices=["F32", "F16"])
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the A1111-style run (it needs about 3 checkpoints of RAM)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the files go (default: a temporary folder)")
    args = parser.parse_args()

    from tests.ref_models import write_sparse_checkpoint

    with tempfile.TemporaryDirectory(dir=args.workdir) as temporary:
        folder = Path(temporary)
        size = write_sparse_checkpoint("sd15", folder / "a.safetensors", dtype=args.dtype)
        write_sparse_checkpoint("sd15", folder / "b.safetensors", dtype=args.dtype)
        for name in ("a.safetensors", "b.safetensors"):
            read_through(folder / name)
        results = {"checkpoint_bytes": size}
        # ru_maxrss of children is the maximum over all children so far: the smaller run first
        wall, peak = run_child(OURS, folder)
        results["ours"] = {"seconds": round(wall, 1), "peak_rss_gib": round(peak / 2**30, 2),
                           "peak_rss_per_checkpoint": round(peak / size, 3)}
        (folder / "ours.safetensors").unlink()
        if not args.no_reference:
            wall, peak = run_child(A1111_STYLE, folder)
            results["a1111_style"] = {"seconds": round(wall, 1),
                                      "peak_rss_gib": round(peak / 2**30, 2),
                                      "peak_rss_per_checkpoint": round(peak / size, 3)}
            results["time_ratio_ours_to_a1111_style"] = round(
                results["ours"]["seconds"] / results["a1111_style"]["seconds"], 2)
    print(f"two SD1.5 {args.dtype} checkpoints of {size / 2**30:.2f} GiB each, weighted sum 7:3")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
