"""A `.yaml` beside a ControlNet file is honoured as sd-webui-controlnet reads it
(`model.params.control_stage_config.params`): attention heads the shapes cannot tell, and the
shuffle ControlNet's global average pooling; a broken sidecar makes the model unusable with a
message, not a crash."""
from __future__ import annotations

import pytest
import torch

from modules.controlnet.models import ControlNetRegistry
from modules.engine.checkpoint_io import CheckpointLoadError
from modules.engine.controlnet import ControlNetPatch, ControlUnitPatch
from modules.engine.unet import CrossAttention
from tests.engine.tiny_checkpoints import write_tiny_controlnet

SIDECAR = """\
model:
  target: cldm.cldm.ControlLDM
  params:
    control_stage_config:
      target: cldm.cldm.ControlNet
      params:
        num_head_channels: 8
        global_average_pooling: {pooling}
"""


def registry_with(tmp_path, sidecar: str | None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_tiny_controlnet(tmp_path / "control_v11e_sd15_shuffle.pth", "sd1", seed=4)
    if sidecar is not None:
        path.with_suffix(".yaml").write_text(sidecar, encoding="utf-8")
    registry = ControlNetRegistry([tmp_path])
    registry.refresh()
    assert [item.path for item in registry.files()] == [path]     # the .yaml is no model
    return registry, registry.files()[0]


def residuals(model, rows_uncond=None):
    generator = torch.Generator().manual_seed(0)
    x, context = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 77, 32)
    hint = (torch.rand(1, 3, 64, 64, generator=generator) > 0.5).float()
    patch = ControlNetPatch([ControlUnitPatch(model, hint)])
    patch.begin_call(0.0, rows_uncond)
    return patch(model.control_config.unet, x, torch.tensor([500.0, 500.0]), context, None)


def test_the_sidecar_sets_heads_and_global_average_pooling(tmp_path):
    plain_registry, plain_item = registry_with(tmp_path / "plain", None)
    plain = plain_registry.load(plain_item)
    registry, item = registry_with(tmp_path / "yaml", SIDECAR.format(pooling="True"))
    model = registry.load(item)
    heads = {m.heads for m in model.modules() if isinstance(m, CrossAttention)}
    plain_heads = {m.heads for m in plain.modules() if isinstance(m, CrossAttention)}
    assert plain.control_config.unet.num_head_channels == -1 and plain_heads == {8}
    assert model.control_config.unet.num_head_channels == 8 and heads != plain_heads
    assert model.control_config.global_average_pooling
    pooled = residuals(model, torch.tensor([False, True]))
    for residual in pooled:
        # one value per channel over the image, and nothing for the unconditional row
        assert torch.allclose(residual[0], residual[0, :, :1, :1].expand_as(residual[0]))
        assert residual[1].abs().max() == 0
    assert not plain.control_config.global_average_pooling
    assert residuals(plain)[0][0].std(dim=(1, 2)).max() > 0


@pytest.mark.parametrize("text, reason", [
    ("model: [unclosed", "cannot read control_v11e_sd15_shuffle.yaml"),
    ("model:\n  params: {}\n", "has no model.params.control_stage_config.params"),
    (SIDECAR.replace("8", "eight"), "bad value"),
])
def test_a_broken_sidecar_makes_the_model_unusable_with_its_reason(tmp_path, text, reason):
    registry, item = registry_with(tmp_path, text)
    with pytest.raises(CheckpointLoadError, match=reason):
        registry.load(item)
    assert reason in item.problem
