"""The shipped demo ControlNet through the API: on held-out captions whose position phrase is
removed, the shape is drawn where the canny map of the control image puts it, far above what the
same prompt and seed give without ControlNet (chance). Skipped when the file is absent."""
from __future__ import annotations

import pytest

from tests.demo.controlnet_adherence import DEMO_CONTROLNET, demo_api, rates, run_trials
from tests.demo.conftest import DEMO_CHECKPOINT

pytestmark = pytest.mark.slow
TRIALS = 50


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    if not (DEMO_CHECKPOINT.is_file() and DEMO_CONTROLNET.is_file()):
        pytest.skip("the demo checkpoint or the demo ControlNet is absent "
                    "(python -m modules.demo.train_demo_controlnet)")
    ctx, client = demo_api(tmp_path_factory.mktemp("demo-controlnet"))
    yield client
    ctx.close()


def test_the_shape_follows_the_control_map(client):
    measured = rates(run_trials(client, TRIALS))
    print(f"position follows the control map over {TRIALS} held-out captions: {measured}")
    assert measured["with_controlnet"] >= 0.85
    assert measured["without_controlnet"] <= 0.5


def test_the_demo_controlnet_is_listed_as_canny(client):
    names = client.get("/controlnet/model_list").json()["model_list"]
    assert any(name.startswith("control_demo-shapes_canny [") for name in names)
    canny = client.get("/controlnet/control_types").json()["control_types"]["Canny"]
    assert canny["default_model"].startswith("control_demo-shapes_canny [")
