"""New textual-inversion embeddings and hypernetworks, in the files A1111 writes (and
`textual_inversion.read_embedding` / `hypernetwork.read_hypernetwork` read back).

* An embedding starts from the vectors of an initialization text: vector i is the text's token
  number i * tokens // count (A1111's spread), zeros for an empty text. SD1.x / SD2.x files are
  A1111's `.pt` (`string_to_param["*"]`, `string_to_token`, `name`, `step`, `sd_checkpoint`,
  `sd_checkpoint_name`); SDXL files are `.safetensors` with `clip_l` and `clip_g`.
* A hypernetwork is, per context width, a (k, v) pair of MLPs built by `build_mlp` with A1111's
  weight initialisations, saved with its structure fields so it loads strictly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from modules.engine.hypernetwork import build_mlp, dropout_structure
from modules.engine.textual_inversion import MAX_VECTORS, SINGLE, Embedding

#: A1111's placeholder token id for "*" in string_to_token (kept for readers that expect it)
PLACEHOLDER_TOKEN = 265
WEIGHT_INITS = ("Normal", "KaimingUniform", "KaimingNormal", "XavierUniform", "XavierNormal")
DEFAULT_SIZES = (768, 320, 640, 1024, 1280)
MAX_WIDTH = 4096          # context widths of real models are 320 ... 2048
MAX_LAYER_FACTOR = 16.0   # a layer at most 16x its width
MAX_LAYERS = 16


def spread_vectors(token_vectors: Tensor, count: int) -> Tensor:
    """[count, C] from an initialization text's token vectors [T, C] (zeros when T is 0)."""
    if not 1 <= count <= MAX_VECTORS:
        raise ValueError(f"vectors per token must be 1 to {MAX_VECTORS}, got {count}")
    tokens, width = token_vectors.shape
    if tokens == 0:
        return torch.zeros(count, width)
    picks = [index * tokens // count for index in range(count)]
    return token_vectors[picks].detach().float().cpu().clone()


def new_embedding(name: str, encoders: Iterable[tuple[str, Tensor]], count: int) -> Embedding:
    """An embedding from, per text encoder (kind, token vectors of the init text [T, C]), its
    vectors; one encoder gives the single-tensor layout, two (SDXL) `clip_l` / `clip_g`."""
    towers = list(encoders)
    if len(towers) == 1:
        vectors = {SINGLE: spread_vectors(towers[0][1], count)}
    else:
        vectors = {("clip_l" if kind == "clip_l" else "clip_g"): spread_vectors(tokens, count)
                   for kind, tokens in towers}
    return Embedding(name=name, vectors=vectors, step=0)


def embedding_suffix(embedding: Embedding) -> str:
    return ".pt" if SINGLE in embedding.vectors else ".safetensors"


def save_embedding(embedding: Embedding, path: Path, *, checkpoint_hash: str | None = None,
                   checkpoint_name: str | None = None) -> Path:
    """Write the embedding (with its step and the checkpoint it was made on) to `path`, through a
    temporary file so a reader never sees half a file."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    if SINGLE in embedding.vectors:
        torch.save({"string_to_token": {"*": PLACEHOLDER_TOKEN},
                    "string_to_param": {"*": embedding.vectors[SINGLE].detach().cpu()},
                    "name": embedding.name, "step": int(embedding.step or 0),
                    "sd_checkpoint": checkpoint_hash, "sd_checkpoint_name": checkpoint_name},
                   temporary)
    else:
        metadata = {"name": embedding.name, "step": str(int(embedding.step or 0)),
                    "sd_checkpoint": checkpoint_hash or "",
                    "sd_checkpoint_name": checkpoint_name or ""}
        save_file({key: value.detach().cpu().contiguous()
                   for key, value in embedding.vectors.items()}, str(temporary), metadata)
    temporary.replace(path)
    return path


def parse_layer_structure(value: Any) -> list[float]:
    """"1, 2, 1" or [1, 2, 1] → [1.0, 2.0, 1.0]; must start and end with 1."""
    items = value.split(",") if isinstance(value, str) else list(value or [1, 2, 1])
    try:
        structure = [float(item) for item in items if str(item).strip()]
    except ValueError as error:
        raise ValueError(f"layer structure {value!r} is not a list of numbers") from error
    if len(structure) < 2 or structure[0] != 1 or structure[-1] != 1:
        raise ValueError(f"layer structure {structure} must start and end with 1")
    if len(structure) > MAX_LAYERS or not all(0 < value <= MAX_LAYER_FACTOR
                                              for value in structure):
        raise ValueError(f"layer structure {structure}: at most {MAX_LAYERS} layers, each "
                         f"above 0 and at most {MAX_LAYER_FACTOR:g} times the width")
    return structure


def _initialise(mlp: nn.Sequential, weight_init: str, activation: str | None,
                generator: torch.Generator) -> None:
    nonlinearity = "leaky_relu" if activation == "leakyrelu" else "relu"
    for layer in mlp:
        if not isinstance(layer, nn.Linear):
            continue
        with torch.no_grad():
            if weight_init == "Normal":
                layer.weight.normal_(0.0, 0.01, generator=generator)
            elif weight_init == "XavierUniform":
                nn.init.xavier_uniform_(layer.weight, generator=generator)
            elif weight_init == "XavierNormal":
                nn.init.xavier_normal_(layer.weight, generator=generator)
            elif weight_init == "KaimingUniform":
                nn.init.kaiming_uniform_(layer.weight, nonlinearity=nonlinearity,
                                         generator=generator)
            else:
                nn.init.kaiming_normal_(layer.weight, nonlinearity=nonlinearity,
                                        generator=generator)
            layer.bias.zero_()


def new_hypernetwork_data(name: str, *, sizes: Iterable[int] = DEFAULT_SIZES,
                          layer_structure: Any = "1, 2, 1", activation_func: str = "linear",
                          weight_init: str = "Normal", add_layer_norm: bool = False,
                          use_dropout: bool = False, dropout_structure_text: Any = None,
                          seed: int = 0) -> dict[Any, Any]:
    """A new hypernetwork as the dict A1111 saves: {width: (k_state, v_state)} plus its fields."""
    if weight_init not in WEIGHT_INITS:
        raise ValueError(f"weight initialization must be one of {', '.join(WEIGHT_INITS)}")
    structure = parse_layer_structure(layer_structure)
    if dropout_structure_text:
        dropouts = [float(item) for item in str(dropout_structure_text).split(",")
                    if item.strip()]
        if len(dropouts) != len(structure) or dropouts[0] != 0 or dropouts[-1] != 0 or \
                not all(0 <= p < 1 for p in dropouts):
            raise ValueError("dropout structure must match the layer structure, start and end "
                             "with 0, and hold probabilities below 1")
    else:
        dropouts = dropout_structure(structure, use_dropout, False)
    widths = sorted({int(size) for size in sizes})
    if not widths:
        raise ValueError("choose at least one context width (768, 320, 640, 1024, 1280)")
    if not all(0 < width <= MAX_WIDTH for width in widths):
        raise ValueError(f"context widths must be from 1 to {MAX_WIDTH}")
    generator = torch.Generator().manual_seed(seed)
    activation = None if activation_func in (None, "", "linear") else activation_func
    data: dict[Any, Any] = {}
    for width in widths:
        pair = []
        for _ in range(2):
            mlp = build_mlp(width, structure, activation, add_layer_norm, False, dropouts)
            _initialise(mlp, weight_init, activation, generator)
            pair.append({f"linear.{key}": value for key, value in mlp.state_dict().items()})
        data[width] = tuple(pair)
    data.update(name=name, step=0, layer_structure=structure,
                activation_func=activation_func or "linear", is_layer_norm=add_layer_norm,
                weight_initialization=weight_init, activate_output=False,
                use_dropout=any(p > 0 for p in dropouts), dropout_structure=dropouts,
                last_layer_dropout=False, optional_info=None, sd_checkpoint=None,
                sd_checkpoint_name=None)
    return data


def save_hypernetwork(data: dict[Any, Any], path: Path) -> Path:
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(data, temporary)
    temporary.replace(path)
    return path
