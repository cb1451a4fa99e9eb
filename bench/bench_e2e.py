"""Benchmark: a txt2img job end to end — this project over HTTP against a diffusers reference on
the same full-size SD1.5 weights, in one process, alternating.

    venv/bin/python bench/bench_e2e.py [--full] [--precision fp32|bf16] [--pairs 5] [--threads 2]
                                       [--breakdown] [--against-fp32]
    venv/bin/python bench/bench_e2e.py --memory [--model sd15|sdxl] [--precision fp32|bf16]

Timing: the project runs as the app does (build_app_context, the FastAPI app under uvicorn on a
local port, POST /sdapi/v1/txt2img, base64 PNG back). The reference is diffusers' UNet2D and
AutoencoderKL with transformers' CLIPTextModel (weights converted by diffusers' own converters)
driven by k-diffusion's Euler with CFG, then PNG + base64 — the same work. Default: 256x256, 4
steps, CFG 7; --full: 512x512, 20 steps. Prints each run, the medians and ours / reference.

Memory (--memory): each side loads and generates once in a child process of its own and reports
its peak RSS against the size of the weights it holds (parameter bytes).

The weights are zeros from the key lists of real files (../shared/ref), written as a sparse
file: the arithmetic is as dense as with real weights. Not a test.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ref_models import write_sparse_checkpoint  # noqa: E402

PROMPT, NEGATIVE, SEED, CFG = "a photograph of a red fox in the snow", "blurry", 1, 7.0


def sizes(full: bool) -> tuple[int, int]:
    return (512, 20) if full else (256, 4)


# -- the project -------------------------------------------------------------------------------
class ProjectServer:
    """The app as `--api --nowebui` serves it, on a free local port in this process."""

    def __init__(self, data_dir: Path, precision: str) -> None:
        import uvicorn

        from modules.api.app import create_api_app
        from modules.app.cmd_args import parse_args
        from modules.app.context import build_app_context
        args, _ = parse_args(["--data-dir", str(data_dir), "--nowebui", "--api",
                              "--cpu-precision", precision, "--no-hashing"])
        self.ctx = build_app_context(args, ROOT)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(create_api_app(self.ctx), host="127.0.0.1", port=self.port,
                                log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)

    def txt2img(self, side: int, steps: int) -> str:
        import httpx
        response = httpx.post(f"http://127.0.0.1:{self.port}/sdapi/v1/txt2img", timeout=3600,
                              json={"prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED,
                                    "steps": steps, "cfg_scale": CFG, "width": side,
                                    "height": side, "sampler_name": "Euler"})
        response.raise_for_status()
        return response.json()["images"][0]

    def weight_bytes(self) -> int:
        model = self.ctx.model_manager.current().model
        return sum(p.numel() * p.element_size() for p in model.parameters())

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.ctx.close()


# -- the diffusers reference -------------------------------------------------------------------
class DiffusersReference:
    """SD1.5 from diffusers' and transformers' classes, the checkpoint's weights converted."""

    def __init__(self, checkpoint: Path, dtype: torch.dtype) -> None:
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint,
                                                         convert_ldm_unet_checkpoint,
                                                         convert_ldm_vae_checkpoint)
        from k_diffusion.external import DiscreteEpsDDPMDenoiser
        from open_clip.tokenizer import SimpleTokenizer
        from safetensors.torch import load_file
        from transformers import CLIPTextConfig, CLIPTextModel

        state = load_file(str(checkpoint))
        with torch.device("meta"):
            unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8)
            vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4,
                                up_block_types=("UpDecoderBlock2D",) * 4,
                                block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                                latent_channels=4)
            text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072,
                                                num_hidden_layers=12, num_attention_heads=12,
                                                max_position_embeddings=77, vocab_size=49408,
                                                hidden_act="quick_gelu", projection_dim=768))
        unet.load_state_dict(convert_ldm_unet_checkpoint(state, unet.config), assign=True)
        vae.load_state_dict(convert_ldm_vae_checkpoint(state, vae.config), assign=True)
        # transformers 5 keeps CLIPTextModel's layers at the top level (no "text_model.")
        clip = {key.removeprefix("text_model."): value
                for key, value in convert_ldm_clip_checkpoint(state).items()}
        text.load_state_dict(clip, strict=True, assign=True)
        text.embeddings.register_buffer("position_ids", torch.arange(77)[None], persistent=False)
        del state
        self.unet, self.vae = unet.to(dtype).eval(), vae.eval()     # the VAE in float32
        self.text = text.to(dtype).eval()
        self.dtype = dtype
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
        alphas_cumprod = torch.cumprod(1 - betas, 0).float()
        self.tokenizer = SimpleTokenizer()

        class Eps(DiscreteEpsDDPMDenoiser):
            def get_eps(inner, x, t, context):   # noqa: N805 - k-diffusion's hook
                return unet(x.to(dtype), t, encoder_hidden_states=context).sample.float()

        self.denoiser = Eps(None, alphas_cumprod, quantize=True)

    def weight_bytes(self) -> int:
        return sum(p.numel() * p.element_size()
                   for module in (self.unet, self.vae, self.text) for p in module.parameters())

    @torch.inference_mode()
    def txt2img(self, side: int, steps: int) -> str:
        from k_diffusion.sampling import sample_euler
        from PIL import Image
        tokens = self.tokenizer([NEGATIVE, PROMPT])
        context = self.text(tokens).last_hidden_state
        sigmas = self.denoiser.get_sigmas(steps)
        generator = torch.Generator().manual_seed(SEED)
        x = torch.randn(1, 4, side // 8, side // 8, generator=generator) * sigmas[0]

        def guided(x, sigma):
            uncond, cond = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]),
                                         context=context).chunk(2)
            return uncond + (cond - uncond) * CFG

        latents = sample_euler(guided, x, sigmas, disable=True)
        pixels = self.vae.decode(latents / 0.18215).sample
        array = ((pixels[0] + 1) * 127.5).clamp(0, 255).round().to(torch.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode("ascii")


# -- where the time goes (--breakdown) ----------------------------------------------------------
class Stopwatch:
    """Wall time spent inside given modules' forward calls, by part name (forward hooks)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self._started: dict[str, float] = {}

    def attach(self, part: str, module: torch.nn.Module) -> None:
        def before(_module, _inputs) -> None:
            self._started[part] = time.perf_counter()

        def after(_module, _inputs, _output) -> None:
            elapsed = time.perf_counter() - self._started.pop(part)
            self.totals[part] = self.totals.get(part, 0.0) + elapsed

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)

    def take(self) -> dict[str, float]:
        totals, self.totals = self.totals, {}
        return totals


def attach_stopwatches(project: "ProjectServer", reference: DiffusersReference
                       ) -> dict[str, Stopwatch]:
    model = project.ctx.model_manager.current().model
    ours, theirs = Stopwatch(), Stopwatch()
    ours.attach("unet", model.model.diffusion_model)
    ours.attach("vae", model.first_stage_model.decoder)
    for encoder, _ in model.text_encoders:
        ours.attach("text", encoder)
    theirs.attach("unet", reference.unet)
    theirs.attach("vae", reference.vae.decoder)
    theirs.attach("text", reference.text)
    return {"project": ours, "diffusers": theirs}


def describe_parts(total: float, parts: dict[str, float]) -> str:
    other = total - sum(parts.values())
    return ", ".join(f"{name} {seconds:.2f}" for name, seconds in
                     [*sorted(parts.items()), ("other", other)])


# -- runs --------------------------------------------------------------------------------------
def write_checkpoint(data_dir: Path, model: str) -> Path:
    path = data_dir / "models" / "Stable-diffusion" / f"bench-{model}.safetensors"
    write_sparse_checkpoint({"sd15": "sd15", "sdxl": "sdxl_base"}[model], path)
    return path


def timing(args: argparse.Namespace) -> None:
    """Alternating runs of the project and the diffusers reference (or, --against-fp32, of the
    project at --precision and the project in float32)."""
    side, steps = sizes(args.full)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    other = "project fp32" if args.against_fp32 else "diffusers"
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder) / "main"
        checkpoint = write_checkpoint(data_dir, "sd15")
        project = ProjectServer(data_dir, args.precision)
        if args.against_fp32:
            write_checkpoint(Path(folder) / "fp32", "sd15")
            reference = ProjectServer(Path(folder) / "fp32", "fp32")
        else:
            reference = DiffusersReference(checkpoint, dtype)
        runs = {"project": lambda: project.txt2img(side, steps),
                other: lambda: reference.txt2img(side, steps)}
        for run in runs.values():                    # warm-up: loads, first-call costs
            run()
        watches = attach_stopwatches(project, reference) \
            if args.breakdown and not args.against_fp32 else {}
        times: dict[str, list[float]] = {name: [] for name in runs}
        for pair in range(args.pairs):
            order = list(runs) if pair % 2 == 0 else list(reversed(runs))
            for name in order:
                start = time.perf_counter()
                runs[name]()
                times[name].append(time.perf_counter() - start)
                if name in watches:
                    print(f"  {name}: {describe_parts(times[name][-1], watches[name].take())}")
            print(f"pair {pair + 1}: project {times['project'][-1]:.2f}s, "
                  f"{other} {times[other][-1]:.2f}s", flush=True)
        project.close()
        if args.against_fp32:
            reference.close()
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"txt2img {side}x{side}, {steps} Euler steps, CFG {CFG}, {args.precision}, "
          f"{torch.get_num_threads()} threads, {args.pairs} pairs")
    print(f"median: project {medians['project']:.2f}s, {other} {medians[other]:.2f}s, "
          f"ratio project / {other} {medians['project'] / medians[other]:.3f}")


def child(args: argparse.Namespace) -> None:
    """One side alone: load, generate once, print its peak RSS and weight bytes as JSON."""
    side, steps = sizes(args.full)
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        checkpoint = write_checkpoint(data_dir, args.model)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if args.child == "project":
            runner = ProjectServer(data_dir, args.precision)
        else:
            dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
            runner = DiffusersReference(checkpoint, dtype)
        start = time.perf_counter()
        runner.txt2img(side, steps)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"peak": peak, "before": before, "weights": runner.weight_bytes(),
                          "seconds": seconds}))


def memory(args: argparse.Namespace) -> None:
    sides = ["project"] + (["diffusers"] if args.model == "sd15" else [])
    for name in sides:
        command = [sys.executable, __file__, "--child", name, "--model", args.model,
                   "--precision", args.precision, "--threads", str(args.threads)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        found = json.loads(output.strip().splitlines()[-1])
        print(f"{name:>9} {args.model} {args.precision}: peak RSS {found['peak'] / 1e9:.2f} GB "
              f"for {found['weights'] / 1e9:.2f} GB of weights "
              f"({found['peak'] / found['weights']:.2f}x); one image {found['seconds']:.1f}s",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="512x512, 20 steps")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--memory", action="store_true", help="peak RSS of each side alone")
    parser.add_argument("--against-fp32", action="store_true",
                        help="compare with the project in float32 instead of diffusers")
    parser.add_argument("--breakdown", action="store_true",
                        help="also print the seconds in text encoder, UNet and VAE decoder")
    parser.add_argument("--model", choices=["sd15", "sdxl"], default="sd15")
    parser.add_argument("--child", choices=["project", "diffusers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(args)
    elif args.memory:
        memory(args)
    else:
        timing(args)


if __name__ == "__main__":
    main()
