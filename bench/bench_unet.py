"""Benchmark: our LDM UNetModel vs diffusers' UNet2DConditionModel, SD1.5 size, same weights.

    venv/bin/python bench/bench_unet.py --iters 3 --threads 2

Both networks run in this process with identical random weights (ours converted to diffusers'
layout by diffusers' own converter), the same inputs, thread count and `torch.inference_mode()`;
timed iterations are interleaved so background load hits both alike. Prints the mean time of each
and the ratios ours / diffusers of the means and of the minimums (lower is better; the target
is <= 1.0). Not a test.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modules.engine.configs import UNetConfig  # noqa: E402
from modules.engine.unet import UNetModel  # noqa: E402

SD15 = UNetConfig()


def build_models(device: torch.device, dtype: torch.dtype) -> tuple[torch.nn.Module, torch.nn.Module]:
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    torch.manual_seed(0)
    ours = UNetModel(SD15).eval()
    with torch.device("meta"):
        theirs = UNet2DConditionModel(
            cross_attention_dim=SD15.context_dim, attention_head_dim=SD15.num_heads
        ).eval()
    ldm_state = {f"model.diffusion_model.{k}": v for k, v in ours.state_dict().items()}
    converted = convert_ldm_unet_checkpoint(ldm_state, theirs.config)
    # diffusers gets plain contiguous weights (its own default layout); unchanged tensors are shared
    theirs.load_state_dict({k: v.contiguous() for k, v in converted.items()}, strict=True, assign=True)
    if dtype != torch.float32:
        ours, theirs = ours.to(dtype), theirs.to(dtype)
    return ours.to(device), theirs.to(device)


def timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations per model")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--size", type=int, default=64, help="latent height and width")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    build_start = time.perf_counter()
    ours, theirs = build_models(device, dtype)
    print(f"built both SD1.5 UNets in {time.perf_counter() - build_start:.1f}s")

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 4, args.size, args.size, generator=gen).to(device, dtype)
    context = torch.randn(args.batch, 77, SD15.context_dim, generator=gen).to(device, dtype)
    timesteps = torch.linspace(999.0, 1.0, args.batch).to(device)

    runners = {
        "ours": lambda: ours(x, timesteps, context),
        "diffusers": lambda: theirs(x, timesteps, encoder_hidden_states=context).sample,
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    outputs: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for _ in range(args.warmup):
            for name, run in runners.items():
                _, outputs[name] = timed(run, device)
        for _ in range(args.iters):
            for name, run in runners.items():
                seconds, outputs[name] = timed(run, device)
                times[name].append(seconds)

    max_diff = (outputs["ours"].float() - outputs["diffusers"].float()).abs().max().item()
    print(
        f"device={device} dtype={args.dtype} threads={args.threads} batch={args.batch} "
        f"latent={args.size}x{args.size} context=[{args.batch},77,{SD15.context_dim}] iters={args.iters}"
    )
    for name, samples in times.items():
        print(f"{name:>10}: mean {statistics.mean(samples):.3f}s  min {min(samples):.3f}s")
    ratio = statistics.mean(times["ours"]) / statistics.mean(times["diffusers"])
    # the min is the steadier figure on a machine shared with other work
    ratio_min = min(times["ours"]) / min(times["diffusers"])
    print(f"ratio ours/diffusers: mean {ratio:.3f}  min {ratio_min:.3f}   "
          f"max |ours - diffusers| = {max_diff:.2e}")


if __name__ == "__main__":
    main()
