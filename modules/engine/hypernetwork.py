"""A1111 hypernetworks (`models/hypernetworks/*.pt`): per context width (320, 640, 768, 1280 …)
a pair of small MLPs that transform what the UNet's attention layers read their keys and values
from: `k_source = x + mlp_k(x) * multiplier` (and the same for values). They act on every
`CrossAttention` of the UNet (self-attention included, where the context is the image itself),
for the length of a job (`HypernetworkPatch`).

File layout (a pickle, read with `weights_only=True`): `{width: (k_state, v_state), …}` where each
state is a `torch.nn.Sequential`'s under `linear.N.*`, plus `layer_structure` ([1, 2, 1] by
default), `activation_func`, `is_layer_norm`, `activate_output`, `use_dropout`,
`last_layer_dropout`, `dropout_structure`, `name`, `step`, `sd_checkpoint`, `sd_checkpoint_name`.
The MLP is rebuilt from those fields as A1111 builds it and loaded strictly.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from modules.engine.checkpoint_io import CheckpointLoadError, read_pickle

#: A1111's names; any other name of torch.nn's activations works too (lower case)
ACTIVATIONS = {"linear": nn.Identity, "relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "elu": nn.ELU,
               "swish": nn.Hardswish, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class HypernetworkError(ValueError):
    """A file that is no hypernetwork this build reads (the message says why)."""


def _activation(name: str | None) -> type[nn.Module] | None:
    if name in (None, "linear"):
        return None
    if name in ACTIVATIONS:
        return ACTIVATIONS[name]
    found = {cls.lower(): getattr(nn.modules.activation, cls)
             for cls in dir(nn.modules.activation) if not cls.startswith("_")}
    if str(name).lower() in found and isinstance(found[str(name).lower()], type):
        return found[str(name).lower()]
    raise HypernetworkError(f"unknown activation function {name!r}")


def dropout_structure(layer_structure: list[float], use_dropout: bool,
                      last_layer_dropout: bool) -> list[float]:
    """A1111's structure for files that predate `dropout_structure` (dropout only trains; it
    decides where modules sit in the saved Sequential)."""
    if not use_dropout:
        return [0.0] * len(layer_structure)
    return [0.0] + [0.3] * (len(layer_structure) - 3) + [0.3 if last_layer_dropout else 0.0, 0.0]


def build_mlp(width: int, layer_structure: list[float], activation: str | None,
              layer_norm: bool, activate_output: bool, dropouts: list[float]) -> nn.Sequential:
    """The MLP of one side, module by module as A1111 lays it out (indices match the file)."""
    layers: list[nn.Module] = []
    act = _activation(activation)
    last = len(layer_structure) - 2
    for i in range(len(layer_structure) - 1):
        inner, outer = int(width * layer_structure[i]), int(width * layer_structure[i + 1])
        layers.append(nn.Linear(inner, outer))
        if act is not None and (i < last or activate_output):
            layers.append(act())
        if layer_norm:
            layers.append(nn.LayerNorm(outer))
        if dropouts[i + 1] > 0:
            layers.append(nn.Dropout(p=dropouts[i + 1]))
    return nn.Sequential(*layers)


@dataclass(eq=False)
class Hypernetwork:
    name: str
    layers: dict[int, tuple[nn.Sequential, nn.Sequential]]   # context width → (k, v)
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    info: dict = field(default_factory=dict)


def hypernetwork_from_data(name: str, data: Mapping) -> Hypernetwork:
    structure = [float(v) for v in (data.get("layer_structure") or [1, 2, 1])]
    if len(structure) < 2 or structure[0] != 1 or structure[-1] != 1:
        raise HypernetworkError(f"layer_structure {structure} must start and end with 1")
    dropouts = data.get("dropout_structure") or dropout_structure(
        structure, bool(data.get("use_dropout")), bool(data.get("last_layer_dropout", True)))
    layers: dict[int, tuple[nn.Sequential, nn.Sequential]] = {}
    for width, pair in data.items():
        if not isinstance(width, int):
            continue
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise HypernetworkError(f"width {width}: expected a (k, v) pair of state dicts")
        sides = []
        for state in pair:
            mlp = build_mlp(width, structure, data.get("activation_func"),
                            bool(data.get("is_layer_norm")), bool(data.get("activate_output")),
                            [float(p) for p in dropouts])
            state = {key.removeprefix("linear."): value for key, value in state.items()}
            try:
                mlp.load_state_dict(state, strict=True)
            except RuntimeError as error:
                raise HypernetworkError(f"width {width}: the weights do not fit the file's own "
                                        f"structure ({str(error).splitlines()[0]})") from error
            sides.append(mlp.eval().requires_grad_(False))
        layers[width] = (sides[0], sides[1])
    if not layers:
        raise HypernetworkError("no layers (a hypernetwork maps context widths to MLP pairs)")
    step = data.get("step")
    return Hypernetwork(str(data.get("name") or name), layers,
                        int(step) if isinstance(step, int) else None,
                        data.get("sd_checkpoint"), data.get("sd_checkpoint_name"))


def read_hypernetwork(path: Path, *, allow_unsafe_pickle: bool = False) -> Hypernetwork:
    try:
        data = read_pickle(path, allow_unsafe_pickle=allow_unsafe_pickle)
    except CheckpointLoadError as error:
        raise HypernetworkError(error.reason) from error
    if not isinstance(data, Mapping):
        raise HypernetworkError(f"the file holds a {type(data).__name__}, not a dict")
    return hypernetwork_from_data(Path(path).stem, data)


class HypernetworkPatch:
    """`with HypernetworkPatch(unet, [(hypernetwork, multiplier), …]):` every attention layer
    of `unet` reads keys and values through the networks, in order; nothing is left after."""

    def __init__(self, unet: nn.Module, networks: list[tuple[Hypernetwork, float]]) -> None:
        self.unet = unet
        self.networks = [(network, multiplier) for network, multiplier in networks
                         if multiplier != 0]
        self._attached: list[nn.Module] = []

    def transform(self, source_k: Tensor, source_v: Tensor) -> tuple[Tensor, Tensor]:
        for network, multiplier in self.networks:
            pair = network.layers.get(source_k.shape[-1])
            if pair is None:
                continue
            mlp_k, mlp_v = pair
            dtype = source_k.dtype
            k_in, v_in = source_k.float(), source_v.float()
            mlp_k.to(source_k.device), mlp_v.to(source_v.device)
            source_k = (k_in + mlp_k(k_in) * multiplier).to(dtype)
            source_v = (v_in + mlp_v(v_in) * multiplier).to(dtype)
        return source_k, source_v

    def __enter__(self) -> "HypernetworkPatch":
        if self.networks:
            for module in self.unet.modules():
                hooks = getattr(module, "context_hooks", None)
                if hooks is not None:
                    hooks.append(self.transform)
                    self._attached.append(module)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for module in self._attached:
            module.context_hooks.remove(self.transform)
        self._attached.clear()
