"""Train the offline demo checkpoint: a small-width SD1.x model on the procedural shapes dataset.

    python -m modules.demo.train_demo_model --out models/Stable-diffusion/demo-shapes.safetensors

The networks are the engine's own classes built from an SD1.x `ModelConfig`, so the file has the
real SD1.x key names (`model.diffusion_model.*`, `first_stage_model.*`,
`cond_stage_model.transformer.text_model.*`) and loads through `load_model` like any checkpoint.
Stages: (1) the VAE (4 levels, f=8, 4 latent channels), then its latents are normalised so that
the engine's fixed SD1 scale 0.18215 gives zero-mean, unit-std latents; (2) the UNet and the text
encoder together, eps-prediction on SD's scaled-linear schedule, 10% empty captions for
classifier-free guidance, EMA weights saved. Deterministic for a given device and thread count.
The recipe (all hyper-parameters, dataset, timings) is stored as JSON in the safetensors metadata.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from modules.demo import shapes_dataset
from modules.demo.shapes_dataset import ShapesDataset, caption_dropout
from modules.engine.conditioning import tokenize_prompt
from modules.engine.configs import ModelConfig, TextEncoderConfig, UNetConfig, VAEConfig
from modules.engine.detection import SD_SCALING_FACTOR
from modules.engine.sd_model import StableDiffusionModel, ldm_alphas_cumprod, load_model
from modules.engine.tokenizer import ClipTokenizer, get_clip_tokenizer
from modules.engine.vae import AutoencoderKL

RECIPE_METADATA_KEY = "demo_shapes_recipe"
DEFAULT_OUT = "models/Stable-diffusion/demo-shapes.safetensors"


@dataclass(frozen=True)
class Recipe:
    """Every choice that determines the trained weights (stored in the file's metadata)."""
    seed: int = 0
    image_size: int = 64
    two_shape_prob: float = 0.1
    # VAE: trained on random crops (cheap), then on full images
    vae_ch: int = 32
    vae_ch_mult: tuple[int, ...] = (1, 1, 2, 2)
    vae_res_blocks: int = 1
    vae_crop_steps: int = 1600
    vae_crop_size: int = 32
    vae_crop_batch: int = 32
    vae_full_steps: int = 400
    vae_full_batch: int = 16
    vae_lr: float = 5e-4
    vae_kl_weight: float = 1e-4
    # latents of this many training images are computed once (the VAE is frozen afterwards)
    latent_images: int = 16384
    # UNet (SD1 layout: attention on all but the deepest level, 8 heads) and CLIP-L text tower
    unet_channels: int = 64
    unet_channel_mult: tuple[int, ...] = (1, 1, 1, 2)
    unet_res_blocks: int = 2
    unet_transformer_depth: tuple[int, ...] = (1, 1, 1, 0)
    text_width: int = 64
    text_layers: int = 3
    text_intermediate: int = 256
    steps: int = 4000
    batch: int = 32
    lr: float = 1e-3
    warmup_steps: int = 200
    min_snr_gamma: float = 5.0       # Min-SNR loss weighting: faster convergence of eps models
    ema_decay: float = 0.999
    empty_caption_prob: float = 0.1  # classifier-free guidance dropout
    caption_part_drop_prob: float = 0.1
    save_every: int = 250

    def model_config(self) -> ModelConfig:
        text = TextEncoderConfig(
            kind="clip_l", width=self.text_width, layers=self.text_layers,
            heads=max(1, self.text_width // 64),     # what detection infers for SD1 CLIP-L
            intermediate=self.text_intermediate, projection_dim=None, act="quick_gelu",
            default_layer=-1, pad_token=49407)
        depth = self.unet_transformer_depth
        unet = UNetConfig(
            in_channels=4, out_channels=4, model_channels=self.unet_channels,
            channel_mult=self.unet_channel_mult, num_res_blocks=self.unet_res_blocks,
            transformer_depth=depth, transformer_depth_middle=1,
            transformer_depth_output=tuple(d for d in reversed(depth)
                                           for _ in range(self.unet_res_blocks + 1)),
            context_dim=self.text_width, num_heads=8, num_head_channels=-1,
            use_linear_in_transformer=False)
        vae = VAEConfig(ch=self.vae_ch, ch_mult=self.vae_ch_mult,
                        num_res_blocks=self.vae_res_blocks, scaling_factor=SD_SCALING_FACTOR)
        return ModelConfig(family="sd1", unet=unet, vae=vae,
                           text_encoders=(("cond_stage_model.", text),))


QUICK_RECIPE = dict(vae_crop_steps=20, vae_full_steps=5, latent_images=256, steps=20, batch=8,
                    save_every=10, unet_channels=32, text_layers=1)


@dataclass
class TrainingLog:
    """Timings and losses, written into the recipe metadata."""
    seconds: dict[str, float] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    latent_stats: dict[str, list[float]] = field(default_factory=dict)
    unet_steps_done: int = 0
    resumed_from: dict[str, object] | None = None


def _images_to_tensor(images: list, device: torch.device) -> torch.Tensor:
    array = np.stack([np.asarray(image, dtype=np.float32) for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).to(device) / 127.5 - 1.0


def _batch_indices(rng: random.Random, count: int, limit: int = 1 << 30) -> list[int]:
    return [rng.randrange(limit) for _ in range(count)]


# ---------------------------------------------------------------------------------------- VAE

def _vae_step_images(dataset: ShapesDataset, rng: random.Random, batch: int, crop: int | None,
                     device: torch.device) -> torch.Tensor:
    images = _images_to_tensor([dataset.image(i) for i in _batch_indices(rng, batch)], device)
    if crop is None:
        return images
    size = images.shape[-1]
    crops = []
    for image in images:
        x, y = rng.randrange(size - crop + 1), rng.randrange(size - crop + 1)
        crops.append(image[:, y:y + crop, x:x + crop])
    return torch.stack(crops)


def train_vae(vae: AutoencoderKL, recipe: Recipe, device: torch.device, log: TrainingLog,
              report: Callable[[str], None]) -> None:
    dataset = ShapesDataset(seed=recipe.seed, size=recipe.image_size, split="train",
                            two_shape_prob=recipe.two_shape_prob)
    rng = random.Random(f"vae:{recipe.seed}")
    generator = torch.Generator(device="cpu").manual_seed(recipe.seed)
    optimizer = torch.optim.Adam(vae.parameters(), lr=recipe.vae_lr)
    total = recipe.vae_crop_steps + recipe.vae_full_steps
    started = time.time()
    vae.train()
    for step in range(total):
        crop_phase = step < recipe.vae_crop_steps
        images = _vae_step_images(dataset, rng, recipe.vae_crop_batch if crop_phase else
                                  recipe.vae_full_batch,
                                  recipe.vae_crop_size if crop_phase else None, device)
        # the last 20% of the steps decay the learning rate linearly to 10%
        fraction = max(0.0, (step - 0.8 * total) / (0.2 * total))
        for group in optimizer.param_groups:
            group["lr"] = recipe.vae_lr * (1.0 - 0.9 * fraction)
        mean, log_variance = vae.quant_conv(vae.encoder(images)).chunk(2, dim=1)
        log_variance = log_variance.clamp(-30.0, 20.0)
        noise = torch.randn(mean.shape, generator=generator).to(device)
        latent = mean + torch.exp(0.5 * log_variance) * noise
        reconstruction = vae.decoder(vae.post_quant_conv(latent))
        kl = 0.5 * (mean.pow(2) + log_variance.exp() - 1.0 - log_variance).mean()
        recon = F.l1_loss(reconstruction, images) + F.mse_loss(reconstruction, images)
        loss = recon + recipe.vae_kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == total - 1:
            elapsed = time.time() - started
            report(f"vae step {step + 1}/{total} recon {recon.item():.4f} kl {kl.item():.2f} "
                   f"{elapsed / (step + 1):.2f}s/step")
    log.losses["vae_recon_last"] = float(recon.item())
    log.seconds["vae"] = round(time.time() - started, 1)
    vae.eval()


@torch.no_grad()
def _raw_latent_means(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    return vae.quant_conv(vae.encoder(images)).chunk(2, dim=1)[0]


@torch.no_grad()
def normalise_vae_latents(vae: AutoencoderKL, images: torch.Tensor, batch: int = 64) -> tuple[
        torch.Tensor, torch.Tensor]:
    """Fold a per-channel affine map into quant_conv / post_quant_conv (exactly: both are 1x1
    convs) so that `vae.encode` (which multiplies by the fixed SD1 scale 0.18215) returns latents of
    zero mean and unit std per channel on `images`, and `decode` is unchanged."""
    means = torch.cat([_raw_latent_means(vae, images[i:i + batch])
                       for i in range(0, len(images), batch)])
    channel_mean = means.mean(dim=(0, 2, 3))
    channel_std = means.std(dim=(0, 2, 3))
    gain = 1.0 / (channel_std * vae.scaling_factor)        # raw z -> z' = gain * (z - mean)
    channels = len(gain)
    quant = vae.quant_conv
    quant.weight[:channels] *= gain[:, None, None, None]
    quant.bias[:channels] = (quant.bias[:channels] - channel_mean) * gain
    quant.bias[channels:] += 2.0 * torch.log(gain)            # log-variance of the scaled latent
    post = vae.post_quant_conv
    # post(z) = W z + b with z = z' / gain + mean
    post.bias += (post.weight[:, :, 0, 0] @ channel_mean)
    post.weight /= gain[None, :, None, None]
    return channel_mean, channel_std


# --------------------------------------------------------------------------------- UNet + text

class _TokenCache:
    """Captions -> the 77 token ids the engine feeds CLIP for them (its own chunking code)."""

    def __init__(self, tokenizer: ClipTokenizer):
        self.tokenizer = tokenizer
        self.cache: dict[str, tuple[int, ...]] = {}

    def __call__(self, caption: str) -> tuple[int, ...]:
        if caption not in self.cache:
            chunks, _ = tokenize_prompt(caption, self.tokenizer)
            self.cache[caption] = chunks[0].tokens
        return self.cache[caption]


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for ema_param, param in zip(ema.parameters(), model.parameters()):
            ema_param.lerp_(param, 1.0 - decay)


def add_training_noise(x0: torch.Tensor, alphas_cumprod: torch.Tensor,
                       generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """(noisy latents, timesteps, noise, alpha_cumprod per row) of one DDPM training step; the
    draws come from the CPU `generator` and move to x0's device."""
    t = torch.randint(len(alphas_cumprod), (len(x0),), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    a = alphas_cumprod.to(x0.device)[t][:, None, None, None]
    return a.sqrt() * x0 + (1 - a).sqrt() * noise, t, noise, a


def min_snr_loss(prediction: torch.Tensor, noise: torch.Tensor, alpha_cumprod: torch.Tensor,
                 gamma: float) -> torch.Tensor:
    """eps MSE with Min-SNR weighting (each timestep's weight min(SNR, gamma) / SNR)."""
    snr = alpha_cumprod.flatten() / (1 - alpha_cumprod.flatten())
    weight = torch.clamp(snr, max=gamma) / snr
    return (weight * (prediction.float() - noise).pow(2).mean(dim=(1, 2, 3))).mean()


def learning_rate_scale(step: int, steps: int, warmup_steps: int) -> float:
    """Linear warm-up, then a cosine decay to 10% over the second half (an EMA then averages
    a settling model)."""
    scale = min(1.0, (step + 1) / warmup_steps)
    if step > steps // 2:
        progress = (step - steps // 2) / max(1, steps - steps // 2)
        scale *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
    return scale


def train_diffusion(model: StableDiffusionModel, latents: torch.Tensor, scenes: list,
                    recipe: Recipe, device: torch.device, log: TrainingLog,
                    report: Callable[[str], None],
                    save: Callable[[StableDiffusionModel], None]) -> StableDiffusionModel:
    """Train UNet + text encoder; returns a model holding the EMA weights."""
    networks = torch.nn.ModuleDict({"unet": model.model.diffusion_model,
                                    "text": model.cond_stage_model})
    ema_model = copy.deepcopy(model).requires_grad_(False)
    ema = torch.nn.ModuleDict({"unet": ema_model.model.diffusion_model,
                               "text": ema_model.cond_stage_model})
    networks.train()
    # Adam without weight decay: unused token embeddings get no gradient and stay as initialised
    optimizer = torch.optim.Adam(networks.parameters(), lr=recipe.lr)
    alphas_cumprod = ldm_alphas_cumprod().to(device)
    tokens_of = _TokenCache(get_clip_tokenizer())
    rng = random.Random(f"diffusion:{recipe.seed}")
    generator = torch.Generator(device="cpu").manual_seed(recipe.seed + 1)
    started = time.time()
    running = 0.0
    for step in range(recipe.steps):
        indices = torch.randint(len(latents), (recipe.batch,), generator=generator)
        x0 = latents[indices].to(device)
        captions = [caption_dropout(scenes[i], rng, part_drop_prob=recipe.caption_part_drop_prob,
                                    empty_prob=recipe.empty_caption_prob) for i in indices.tolist()]
        tokens = torch.tensor([tokens_of(c) for c in captions], device=device)
        noisy, t, noise, a = add_training_noise(x0, alphas_cumprod, generator)
        context = networks["text"].encode(tokens, layer=-1, final_norm=True).hidden
        prediction = networks["unet"](noisy, t.float(), context)
        loss = min_snr_loss(prediction, noise, a, recipe.min_snr_gamma)
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr * learning_rate_scale(step, recipe.steps, recipe.warmup_steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(networks.parameters(), 1.0)
        optimizer.step()
        _ema_update(ema, networks, min(recipe.ema_decay, (1 + step) / (10 + step)))
        running = loss.item() if step == 0 else 0.98 * running + 0.02 * loss.item()
        log.unet_steps_done = step + 1
        if step % 25 == 0 or step == recipe.steps - 1:
            elapsed = time.time() - started
            eta = elapsed / (step + 1) * (recipe.steps - step - 1)
            report(f"unet step {step + 1}/{recipe.steps} loss {running:.4f} "
                   f"{elapsed / (step + 1):.2f}s/step eta {eta / 60:.1f} min")
        if (step + 1) % recipe.save_every == 0 and step + 1 < recipe.steps:
            log.seconds["unet"] = round(time.time() - started, 1)
            log.losses["unet_loss_ema"] = round(running, 5)
            save(ema_model)
    log.seconds["unet"] = round(time.time() - started, 1)
    log.losses["unet_loss_ema"] = round(running, 5)
    return ema_model.eval()


# ------------------------------------------------------------------------------------- saving

def _schedule_entries() -> dict[str, torch.Tensor]:
    """The non-weight entries real SD1.x files carry (the engine ignores them on load)."""
    alphas_cumprod = ldm_alphas_cumprod()
    previous = torch.cat([torch.ones(1), alphas_cumprod[:-1]])
    return {
        "betas": 1 - alphas_cumprod / previous, "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": previous, "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1 - alphas_cumprod).log(),
        "sqrt_recip_alphas_cumprod": alphas_cumprod.rsqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / alphas_cumprod - 1).sqrt(),
        "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(77)[None],
    }


def checkpoint_state_dict(model: StableDiffusionModel,
                          dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    state = {key: value.detach().to("cpu", dtype).contiguous()
             for key, value in model.state_dict().items() if value.is_floating_point()}
    state.update(_schedule_entries())
    return state


def recipe_metadata(recipe: Recipe, log: TrainingLog, device: torch.device,
                    threads: int) -> dict[str, str]:
    recipe_json = {
        "recipe": dataclasses.asdict(recipe),
        "dataset": shapes_dataset.describe((recipe.image_size,)),
        "training": {"unet_steps_done": log.unet_steps_done, "seconds": log.seconds,
                     "losses": log.losses, "latent_stats": log.latent_stats,
                     "device": str(device), "threads": threads, "torch": torch.__version__,
                     "resumed_from": log.resumed_from},
        "prediction": "eps", "schedule": "scaled_linear 0.00085..0.012, 1000 steps",
        "latent_scale": SD_SCALING_FACTOR,
        "trainer": "python -m modules.demo.train_demo_model",
    }
    return {
        "format": "pt",
        "modelspec.title": "demo-shapes",
        "modelspec.architecture": "stable-diffusion-v1",
        "modelspec.resolution": f"{recipe.image_size}x{recipe.image_size}",
        RECIPE_METADATA_KEY: json.dumps(recipe_json, sort_keys=True),
    }


def save_checkpoint(model: StableDiffusionModel, path: Path, metadata: dict[str, str]) -> None:
    """Write atomically, so a reader never sees a half-written intermediate checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    save_file(checkpoint_state_dict(model), str(temporary), metadata=metadata)
    os.replace(temporary, path)


def verify_checkpoint(path: Path, recipe: Recipe) -> None:
    """The file must load strictly through the engine and be detected as the trained SD1.x."""
    loaded = load_model(path)
    expected = recipe.model_config()
    if loaded.config.family != "sd1" or loaded.config.unet != expected.unet or \
            loaded.config.vae != expected.vae or \
            loaded.config.text_encoders != expected.text_encoders:
        raise RuntimeError(f"detection does not give the trained architecture: {loaded.config}")


# ---------------------------------------------------------------------------------------- main

def _resume(model: StableDiffusionModel, path: Path, recipe: Recipe) -> dict[str, object]:
    """Load a checkpoint this script wrote (its VAE is kept as is); returns what the new file's
    recipe records about it."""
    previous = load_model(path)
    if previous.config != recipe.model_config():
        raise ValueError(f"{path} does not have the recipe's architecture")
    model.load_state_dict(previous.state_dict())
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata() or {}
    return {"file": path.name,
            "recipe": json.loads(metadata[RECIPE_METADATA_KEY]) if RECIPE_METADATA_KEY in metadata
            else None}


def train(recipe: Recipe, out: Path, *, device: torch.device | None = None,
          report: Callable[[str], None] = print, resume_from: Path | None = None) -> Path:
    """Train (or, with `resume_from`, continue training the UNet and text encoder of) a demo
    checkpoint and write it to `out`."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    torch.manual_seed(recipe.seed)
    model = StableDiffusionModel(recipe.model_config()).to(device)
    log = TrainingLog()
    report(f"recipe: {json.dumps(dataclasses.asdict(recipe))}")

    if resume_from is not None:
        log.resumed_from = _resume(model, Path(resume_from), recipe)
        report(f"resumed from {resume_from}; its VAE is kept")
    else:
        train_vae(model.first_stage_model, recipe, device, log, report)
    started = time.time()
    dataset = ShapesDataset(seed=recipe.seed + 1, size=recipe.image_size, split="train",
                            two_shape_prob=recipe.two_shape_prob)
    scenes = [dataset.scene(i) for i in range(recipe.latent_images)]
    images = _images_to_tensor([shapes_dataset.render_scene(s, recipe.image_size)
                                for s in scenes], torch.device("cpu"))
    vae = model.first_stage_model.requires_grad_(False)
    if resume_from is None:
        mean, std = normalise_vae_latents(vae, images.to(device))
        log.latent_stats = {"raw_mean": mean.tolist(), "raw_std": std.tolist()}
    with torch.no_grad():
        latents = torch.cat([vae.encode(images[i:i + 64].to(device)).cpu()
                             for i in range(0, len(images), 64)])
    del images
    log.latent_stats.update({"scaled_mean": latents.mean(dim=(0, 2, 3)).tolist(),
                             "scaled_std": latents.std(dim=(0, 2, 3)).tolist()})
    log.seconds["latents"] = round(time.time() - started, 1)
    report(f"latents {tuple(latents.shape)} scaled std {log.latent_stats['scaled_std']}")

    def save(ema_model: StableDiffusionModel) -> None:
        save_checkpoint(ema_model, out, recipe_metadata(recipe, log, device, threads))
        report(f"saved {out} after {log.unet_steps_done} steps")

    final = train_diffusion(model, latents, scenes, recipe, device, log, report, save)
    save(final)
    verify_checkpoint(out, recipe)
    report(f"done: {out} ({out.stat().st_size / 2**20:.1f} MiB), loads as SD1.x; "
           f"seconds {log.seconds}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="checkpoint to write (.safetensors)")
    parser.add_argument("--steps", type=int, help="UNet / text encoder steps (recipe default 4000)")
    parser.add_argument("--seed", type=int, help="seed (recipe default 0)")
    parser.add_argument("--threads", type=int, help="CPU threads (torch default when unset)")
    parser.add_argument("--device", help="cpu / cuda (default: cuda when present)")
    parser.add_argument("--resume-from", type=Path,
                        help="continue training the UNet and text encoder of a checkpoint this "
                             "script wrote (keeps its VAE; use another --seed for new batches)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny smoke-test run (a minute; the result makes no real images)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides: dict[str, object] = dict(QUICK_RECIPE) if args.quick else {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.seed is not None:
        overrides["seed"] = args.seed
    recipe = dataclasses.replace(Recipe(), **overrides)
    device = torch.device(args.device) if args.device else None

    def report(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    train(recipe, Path(args.out), device=device, report=report, resume_from=args.resume_from)


if __name__ == "__main__":
    main()
