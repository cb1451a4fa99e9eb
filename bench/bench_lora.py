"""Benchmark: what one LoRA costs a txt2img job, SD1.5 size.

    venv/bin/python bench/bench_lora.py [--size 256] [--steps 4] [--rank 32] [--pairs 3]

A full-size SD1.5 checkpoint (architecture from `../shared/ref/sd15.json`, zero weights: the
arithmetic is the same as with real ones) and a kohya LoRA of `rank` on every module a standard
kohya SD1.5 LoRA trains (the UNet's transformer linears, the text encoder's attention and MLP)
are written to a temporary folder. The LoRA goes through the job path (`LoraLibrary` →
`JobNetworks.patch_for` around the conditioning and the sampling, as the pipeline wraps each
batch). Reported:
- first use: reading the file and matching it onto the model, then the patch on and off;
- a job (prompt encoding, `steps` Euler steps at CFG 7, VAE decode) without and with the LoRA,
  alternating `pairs` times after the first use, and the ratio with / without (target <= 1.05);
- the patch alone (on + off) per job after the first use.
Not a test.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modules.engine.conditioning import PromptEncoder, build_batch_conditioning  # noqa: E402
from modules.engine.noise import ImageRNG  # noqa: E402
from modules.engine.sampling import sample  # noqa: E402
from modules.engine.sd_model import load_model  # noqa: E402
from modules.engine.tokenizer import ClipTokenizer  # noqa: E402
from modules.processing.extra_networks import JobNetworks, LoraLibrary  # noqa: E402
from tests.ref_models import write_sparse_checkpoint  # noqa: E402

UNET_PARTS = ("proj_in", "proj_out", "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
              "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "ff.net.0.proj",
              "ff.net.2")
TEXT_PARTS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def kohya_lora(model: torch.nn.Module, rank: int) -> dict[str, torch.Tensor]:
    """Random rank-`rank` modules under kohya's names (LDM paths for the UNet, which the loader
    reads as they are) for every weight a standard kohya SD1.5 LoRA trains."""
    generator = torch.Generator().manual_seed(0)
    lora = {}
    for key, weight in model.state_dict().items():
        if not key.endswith(".weight") or weight.ndim < 2:
            continue
        path = key[:-len(".weight")]
        if path.startswith("model.diffusion_model.") and any(
                path.endswith(part) for part in UNET_PARTS):
            name = "lora_unet_" + path[len("model.diffusion_model."):].replace(".", "_")
        elif path.startswith("cond_stage_model.transformer.") and path.split(".")[-1] in \
                TEXT_PARTS:
            name = "lora_te_" + path[len("cond_stage_model.transformer."):].replace(".", "_")
        else:
            continue
        inner = weight[0].numel()
        lora[f"{name}.lora_down.weight"] = torch.randn(rank, *weight.shape[1:],
                                                       generator=generator) * 0.01
        lora[f"{name}.lora_up.weight"] = torch.randn(
            weight.shape[0], rank, *([1, 1] if weight.ndim == 4 else []),
            generator=generator) * 0.01
        lora[f"{name}.alpha"] = torch.tensor(float(rank))
        assert inner
    return lora


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--flush-denormal", action="store_true",
                        help="treat subnormal floats as 0 (zero base weights plus a small LoRA "
                             "can decay activations into that slow range; real models do not)")
    args = parser.parse_args()
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    folder = Path(tempfile.mkdtemp(prefix="bench-lora-"))
    checkpoint = folder / "sd15.safetensors"
    write_sparse_checkpoint("sd15", checkpoint)
    model = load_model(checkpoint)
    lora_dir = folder / "Lora"
    lora_dir.mkdir()
    lora = kohya_lora(model, args.rank)
    save_file(lora, str(lora_dir / "bench.safetensors"))
    library = LoraLibrary([lora_dir])
    tokenizer = ClipTokenizer()
    prompt, plain_prompt = "a castle on a hill, evening light", "a castle on a hill, evening light"
    latent = args.size // 8

    def job(networks: JobNetworks | None) -> float:
        started = time.perf_counter()
        patch = networks.patch_for([prompt + " <lora:bench:0.8>"]) if networks else None
        with torch.inference_mode():
            if patch is not None:
                patch.__enter__()
            try:
                encoder = PromptEncoder(model, tokenizer)
                conditioning = build_batch_conditioning(encoder, [plain_prompt], [""],
                                                        args.steps, width=args.size,
                                                        height=args.size)
                result = sample(model, conditioning, ImageRNG((4, latent, latent), [1]),
                                sampler_name="Euler", scheduler="Automatic", steps=args.steps,
                                cfg_scale=7.0)
            finally:
                if patch is not None:
                    patch.__exit__(None, None, None)
            model.decode_first_stage(result.latent)
        return time.perf_counter() - started

    job(None)          # warm-up: the weights are read in, as in a model that has been used
    started = time.perf_counter()
    network = library.network(library.find("bench"), model)
    first_build = time.perf_counter() - started
    networks = JobNetworks(library, model, 1.0)

    def patch_only() -> float:
        started = time.perf_counter()
        with torch.inference_mode(), networks.patch_for([prompt + " <lora:bench:0.8>"]):
            pass
        return time.perf_counter() - started

    first_patch = patch_only()
    times: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(args.pairs):
        times["without"].append(job(None))
        times["with"].append(job(networks))
    patch_times = [patch_only() for _ in range(3)]
    means = {name: statistics.median(values) for name, values in times.items()}
    print(json.dumps({
        "size": args.size, "steps": args.steps, "rank": args.rank,
        "flush_denormal": args.flush_denormal,
        "modules": len(network.modules), "threads": torch.get_num_threads(),
        "first_use_seconds": {"read_and_match": round(first_build, 3),
                              "patch_on_and_off": round(first_patch, 3)},
        "patch_on_and_off_seconds_after_first_use": round(statistics.median(patch_times), 3),
        "job_seconds_median": {k: round(v, 3) for k, v in means.items()},
        "ratio_with_over_without": round(means["with"] / means["without"], 3),
    }, indent=2))


if __name__ == "__main__":
    main()
