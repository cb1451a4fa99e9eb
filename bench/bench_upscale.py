"""Benchmark: a tiled 4× upscale against spandrel's plain call, time and peak memory.

    venv/bin/python bench/bench_upscale.py [--size 512] [--tile 192] [--overlap 8]

A full-size Real-ESRGAN x4plus network (RRDB, 64 filters, 23 blocks; random weights: the
arithmetic is that of the real file) is written to a temporary `.pth`; each variant runs in its
own process (so each peak is its own): `plain` loads it through our loader and calls spandrel's
descriptor on the whole image, `tiled` goes through `run_tiled` with A1111's default tile
settings. Prints seconds, peak RSS (MB) and the ratios tiled / plain. Not a test.
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

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modules.engine.upscaler_models import Tiling, load_upscaler, run_tiled  # noqa: E402


def run_variant(variant: str, path: Path, size: int, tile: int, overlap: int) -> dict:
    descriptor = load_upscaler(path)
    pixels = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    if variant == "plain":
        with torch.inference_mode():
            output = descriptor(pixels)
    else:
        output = run_tiled(descriptor, pixels, Tiling(tile, overlap))
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb),
            "output": list(output.shape)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--tile", type=int, default=192)
    parser.add_argument("--overlap", type=int, default=8)
    parser.add_argument("--variant", choices=["plain", "tiled"], default=None,
                        help="(internal) run one variant in this process")
    parser.add_argument("--model", type=Path, default=None, help="(internal) the model file")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.model, args.size, args.tile,
                                     args.overlap)))
        return
    from spandrel.architectures.ESRGAN import ESRGAN
    folder = Path(tempfile.mkdtemp(prefix="bench-upscale-"))
    model = folder / "RealESRGAN_x4plus.pth"
    torch.manual_seed(0)
    torch.save({"params_ema": ESRGAN(num_filters=64, num_blocks=23, scale=4).state_dict()},
               model)
    results = {}
    for variant in ("plain", "tiled"):
        answer = subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--model", str(model),
             "--size", str(args.size), "--tile", str(args.tile), "--overlap", str(args.overlap)],
            check=True, capture_output=True, text=True, cwd=ROOT)
        results[variant] = json.loads(answer.stdout.strip().splitlines()[-1])
    print(json.dumps({
        "size": args.size, "tile": args.tile, "overlap": args.overlap,
        "threads": torch.get_num_threads(), **results,
        "time_ratio_tiled_over_plain": round(results["tiled"]["seconds"]
                                             / results["plain"]["seconds"], 3),
        "peak_ratio_tiled_over_plain": round(results["tiled"]["peak_rss_mb"]
                                             / results["plain"]["peak_rss_mb"], 3),
    }, indent=2))


if __name__ == "__main__":
    main()
