"""Trial (issue 16, item 6): would an OpenVINO backend beat torch bf16 for the UNet on this CPU?

    pip install openvino            # not a project requirement; the trial only
    venv/bin/python bench/bench_openvino.py [--iters 3] [--threads 2] [--latent 32]

Our SD1.5-size UNet with random weights is converted by `openvino.convert_model` from the torch
module (float32 weights) and compiled for the CPU with bf16 inference precision; torch runs the
same module in bf16, channels-last, as the app does. OpenVINO's dynamic int8 quantization of
linear layers is switched off unless --dynamic-quantization (it changes the arithmetic). Both get the same inputs (batch 2: the CFG
pair), timed iterations interleaved. Prints the mean time of each, torch / OpenVINO (adoption
needs >= 1.5), and how far each output is from a float32 torch run. Not a test.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modules.engine.configs import UNetConfig  # noqa: E402
from modules.engine.memory_format import use_channels_last  # noqa: E402
from modules.engine.unet import UNetModel  # noqa: E402


def relative_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    return float((out.float() - reference).norm() / reference.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--latent", type=int, default=32, help="latent side (32 = 256x256)")
    parser.add_argument("--dynamic-quantization", action="store_true",
                        help="leave OpenVINO's int8 dynamic quantization of linear layers on "
                        "(off by default here: the outputs would no longer be bf16's)")
    args = parser.parse_args()
    try:
        import openvino as ov
    except ImportError:
        sys.exit("openvino is not installed: pip install openvino (the trial only)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unet = UNetModel(UNetConfig()).eval().requires_grad_(False)
    inputs = (torch.randn(2, 4, args.latent, args.latent), torch.tensor([500.0, 500.0]),
              torch.randn(2, 77, 768))
    with torch.inference_mode():
        reference = unet(*inputs)

    start = time.perf_counter()
    converted = ov.convert_model(unet, example_input=inputs)
    compiled = ov.Core().compile_model(converted, "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": args.threads,
        "PERFORMANCE_HINT": "LATENCY",
        **({} if args.dynamic_quantization else {"DYNAMIC_QUANTIZATION_GROUP_SIZE": 0})})
    print(f"OpenVINO convert + compile: {time.perf_counter() - start:.1f}s", flush=True)

    bf16 = unet.to(torch.bfloat16)
    use_channels_last(bf16)
    low_inputs = (inputs[0].bfloat16(), inputs[1], inputs[2].bfloat16())
    runs = {"torch bf16": lambda: bf16(*low_inputs),
            "openvino bf16": lambda: torch.from_numpy(
                compiled([tensor.numpy() for tensor in inputs])[0])}
    outputs, times = {}, {name: [] for name in runs}
    with torch.inference_mode():
        for name, run in runs.items():
            outputs[name] = run()                        # warm-up
        for _ in range(args.iters):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    means = {name: statistics.mean(values) for name, values in times.items()}
    for name in runs:
        print(f"{name}: {means[name]:.3f}s a call, relative error against fp32 "
              f"{relative_error(outputs[name], reference):.4f}")
    print(f"torch bf16 / OpenVINO bf16: {means['torch bf16'] / means['openvino bf16']:.2f} "
          f"(adoption needs >= 1.5)")


if __name__ == "__main__":
    main()
