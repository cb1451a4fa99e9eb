"""Benchmark: what one ControlNet unit costs per sampling step, SD1.5 size.

    venv/bin/python bench/bench_controlnet.py [--size 256] [--steps 20] [--dtype fp32|bf16]

A full-size SD1.5 UNet and a full-size SD1.5 ControlNet (architectures from the key lists in
`../shared/ref/`, zero weights: the arithmetic is the same as with real ones) run the CFG batch
(2 rows) of a `size`×`size` txt2img step by step, alternating steps without and with the unit
so that background load hits both alike. Prints the mean step time of each and the ratio
with / without (a ControlNet is the UNet's encoder and middle block: target <= 1.5). Not a test.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modules.engine.controlnet import ControlNetModel, ControlNetPatch, ControlUnitPatch, \
    controlnet_weights, detect_controlnet_config  # noqa: E402
from modules.engine.detection import detect_model_config  # noqa: E402
from modules.engine.unet import UNetModel  # noqa: E402
from tests.ref_models import load_ref  # noqa: E402


def zero_module(build, dtype: torch.dtype) -> torch.nn.Module:
    with torch.device("meta"):
        module = build()
    module = module.to_empty(device="cpu").requires_grad_(False)
    for tensor in module.state_dict().values():
        tensor.zero_()
    return module.to(dtype).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    meta = {key: torch.empty(shape, device="meta")
            for key, shape in load_ref("sd15")["tensors"].items()}
    unet_config = detect_model_config(meta).unet
    control_meta = controlnet_weights({key: torch.empty(shape, device="meta") for key, shape
                                       in load_ref("controlnet_sd15")["tensors"].items()})
    unet = zero_module(lambda: UNetModel(unet_config), dtype)
    control = zero_module(lambda: ControlNetModel(detect_controlnet_config(control_meta)), dtype)
    latent = args.size // 8
    x = torch.randn(2, 4, latent, latent)
    t = torch.tensor([500.0, 500.0])
    context = torch.randn(2, 77, 768)
    patch = ControlNetPatch([ControlUnitPatch(control, torch.rand(1, 3, args.size, args.size))])

    def plain() -> None:
        unet(x, t, context)

    def with_unit() -> None:
        unet(x, t, context, control=patch(unet_config, x.to(dtype), t, context, None))

    times: dict[str, list[float]] = {"without": [], "with": []}
    with torch.inference_mode():
        plain(), with_unit()                                  # warm-up
        for _ in range(args.steps):
            for name, step in (("without", plain), ("with", with_unit)):
                started = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - started)
    means = {name: statistics.mean(values) for name, values in times.items()}
    print(json.dumps({"size": args.size, "steps": args.steps, "dtype": args.dtype,
                      "threads": torch.get_num_threads(),
                      "seconds_per_step": {k: round(v, 3) for k, v in means.items()},
                      "ratio_with_to_without": round(means["with"] / means["without"], 3)},
                     indent=1))


if __name__ == "__main__":
    main()
