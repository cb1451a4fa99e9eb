"""Seamless tiling: every Conv2d pads circularly for the duration of a job (A1111's `tiling`)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch.nn as nn


@contextlib.contextmanager
def circular_padding(*modules: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Switch Conv2d padding to circular inside the block and restore each layer's own mode after."""
    if not enabled:
        yield
        return
    previous: list[tuple[nn.Conv2d, str]] = []
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, nn.Conv2d):
                previous.append((layer, layer.padding_mode))
                layer.padding_mode = "circular"
    try:
        yield
    finally:
        for layer, mode in previous:
            layer.padding_mode = mode
