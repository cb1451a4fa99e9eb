"""Architecture descriptions inferred from checkpoint tensor shapes.

`modules.engine.detection.detect_model_config(state_dict)` fills these; the network classes take
them as their only constructor argument, so a tiny test checkpoint and a 2 GB one run the same code.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class UNetConfig:
    """The LDM `openaimodel.UNetModel` hyper-parameters (key names follow the original code)."""
    in_channels: int = 4              # 4 normal, 9 inpainting, 8 instruct-pix2pix
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    # transformer depth per level (0 = no attention at that level); SD1/2: (1,1,1,0), SDXL: (0,2,10)
    transformer_depth: tuple[int, ...] = (1, 1, 1, 0)
    transformer_depth_middle: int = 1
    # output-block transformer depth per output block, top level first as stored in the file order
    # (len = levels * (num_res_blocks + 1)); None = derived from transformer_depth
    transformer_depth_output: tuple[int, ...] | None = None
    context_dim: int = 768
    num_heads: int = 8                # used when num_head_channels == -1 (SD1.x)
    num_head_channels: int = -1       # SD2.x / SDXL: 64
    use_linear_in_transformer: bool = False   # SD2.x / SDXL use Linear proj_in/proj_out
    adm_in_channels: int | None = None        # SDXL: 2816 base, 2560 refiner (label_emb)
    # "spatial": SpatialTransformer blocks with cross-attention (every SD model); "self": LDM's
    # older self-attention-only `AttentionBlock` (use_spatial_transformer=False: LDSR)
    attention_block: str = "spatial"


@dataclass(frozen=True)
class VAEConfig:
    """LDM AutoencoderKL (`first_stage_model.*`)."""
    in_channels: int = 3
    out_channels: int = 3
    z_channels: int = 4
    embed_dim: int = 4
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    # mid-block attention q/k/v/proj_out stored as 1x1 convs (LDM) or as linears (diffusers-converted)
    attn_linear: bool = False
    # the encoder's output holds a mean and a log-variance (KL); a VQ first stage has one latent
    double_z: bool = True
    scaling_factor: float = 0.18215  # SDXL: 0.13025


@dataclass(frozen=True)
class TextEncoderConfig:
    """One text tower. kind 'clip_l' = transformers CLIPTextModel layout
    (`transformer.text_model.*`), kind 'open_clip' = OpenCLIP layout (`model.*`), kind
    'xlm_roberta' = Alt-Diffusion's XLM-R with a projection (`roberta.*`, `transformation.*`)."""
    kind: str                         # "clip_l" | "open_clip" | "xlm_roberta"
    width: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3072
    vocab_size: int = 49408
    max_positions: int = 77
    projection_dim: int | None = None  # text_projection width (OpenCLIP; CLIP-L in SDXL has none)
    act: str = "quick_gelu"            # SD1 CLIP-L: quick_gelu; OpenCLIP ViT-H / bigG: gelu
    # which hidden layer SD conditions on by default: -1 last (SD1), -2 penultimate (SD2, SDXL)
    default_layer: int = -1
    pad_token: int = 49407             # SD1 pads with EOS; OpenCLIP pads with 0
    # xlm_roberta only: the file keeps RoBERTa's pooler (unused); AltDiffusion-m18 conditions on
    # `transformation_pre` of the penultimate layer
    pooler: bool = False
    pre_transformation: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """Everything the engine needs to build and run one checkpoint."""
    family: str                        # "sd1" | "sd2" | "sdxl" | "sdxl_refiner"
    variant: str = "normal"            # "normal" | "inpaint" | "edit"
    prediction: str = "eps"            # "eps" | "v"
    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    # key prefix in the checkpoint -> encoder config, in the order SDXL concatenates them
    text_encoders: tuple[tuple[str, TextEncoderConfig], ...] = ()

    @property
    def is_sdxl(self) -> bool:
        return self.family in ("sdxl", "sdxl_refiner")

    @property
    def latent_channels(self) -> int:
        return self.vae.z_channels
