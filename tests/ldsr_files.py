"""A tiny random-weight LDSR in the release's layout: `model.ckpt` (a LatentDiffusion training
checkpoint: `state_dict` with `model.diffusion_model.*`, `first_stage_model.*`, the DDPM schedule
buffers and EMA entries) and `project.yaml` with the release's structure at a small width."""
from __future__ import annotations

from pathlib import Path

import torch

from modules.engine.ldsr import LDSRModel, parse_ldsr_config

TINY_PROJECT_YAML = """\
model:
  base_learning_rate: 1.0e-06
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    linear_start: 0.0015
    linear_end: 0.0155
    log_every_t: 100
    timesteps: 1000
    loss_type: l2
    first_stage_key: image
    cond_stage_key: LR_image
    image_size: 64
    channels: 3
    concat_mode: true
    cond_stage_trainable: false
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        image_size: 64
        in_channels: 6
        out_channels: 3
        model_channels: 32
        attention_resolutions:
        - 2
        num_res_blocks: 1
        channel_mult:
        - 1
        - 2
        num_head_channels: 16
    first_stage_config:
      target: ldm.models.autoencoder.VQModelInterface
      params:
        embed_dim: 3
        n_embed: 64
        monitor: val/rec_loss
        ddconfig:
          double_z: false
          z_channels: 3
          resolution: 256
          in_channels: 3
          out_ch: 3
          ch: 32
          ch_mult:
          - 1
          - 2
          - 2
          num_res_blocks: 1
          attn_resolutions: []
          dropout: 0.0
        lossconfig:
          target: torch.nn.Identity
    cond_stage_config:
      target: torch.nn.Identity
"""


def tiny_ldsr_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = LDSRModel(parse_ldsr_config(TINY_PROJECT_YAML))
    with torch.no_grad():
        # random weights large enough that the output depends on the steps and the input
        for name, parameter in model.named_parameters():
            if name.endswith("weight") and parameter.dim() > 1:
                parameter.normal_(0, 0.2 / max(1, parameter[0].numel()) ** 0.5 * 3)
    return dict(model.state_dict())


def write_tiny_ldsr(folder: Path, *, with_yaml: bool = True, seed: int = 0) -> Path:
    """models/LDSR/model.ckpt (+ project.yaml); returns the weights' path."""
    folder.mkdir(parents=True, exist_ok=True)
    state = tiny_ldsr_state_dict(seed)
    betas = torch.linspace(0.0015 ** 0.5, 0.0155 ** 0.5, 1000, dtype=torch.float64) ** 2
    state["betas"] = betas.float()
    state["alphas_cumprod"] = torch.cumprod(1 - betas, 0).float()
    state["model_ema.decay"] = torch.tensor(0.9999)
    state["model_ema.num_updates"] = torch.tensor(0, dtype=torch.int32)
    path = folder / "model.ckpt"
    torch.save({"state_dict": state, "global_step": 0}, path)
    if with_yaml:
        (folder / "project.yaml").write_text(TINY_PROJECT_YAML, encoding="utf-8")
    return path
