"""Fuzz every operation of /openapi.json with schemathesis-generated input (valid and invalid),
in-process: no 5xx other than those an operation documents, and the server still answers
/internal/ping afterwards.

The app runs over the real AppContext of an empty data folder (every service real, so every route
has what it needs) with no checkpoint: txt2img goes to the fake runner of test_api_inprocess;
other generation routes answer the deliberate 503 "no checkpoint" (errors.py), which is allowed.

Bounded for a 2-core machine: a few examples per operation and mode, no shrinking. The number of
cases run is printed (run with -s to see it)."""
from __future__ import annotations

import time
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

import schemathesis
from schemathesis import GenerationMode

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from tests.api.test_api_inprocess import FakeRunner
from tests.integration.conftest import ROOT

EXAMPLES_PER_OPERATION = 15
# Generation inputs that would only exercise the fake runner's memory, not the routes.
MAX_PIXELS = 256


class BoundedRunner(FakeRunner):
    """The fake runner, refusing (like processing would, with a 400) sizes it cannot draw."""

    def __call__(self, params, ctx):
        from modules.processing.context import UnsupportedRequestError
        if params.width * params.height > MAX_PIXELS * MAX_PIXELS \
                or params.batch_size * params.n_iter > 8 or params.steps > 50:
            raise UnsupportedRequestError("fuzz: size or count outside the fake runner's range")
        return super().__call__(params, ctx)


@pytest.fixture
def fuzz_app(tmp_path):
    args, _ = parse_args(["--nowebui", "--data-dir", str(tmp_path), "--skip-load-model-at-start"])
    ctx = build_app_context(args, ROOT)
    yield create_api_app(ctx, txt2img_runner=BoundedRunner())
    ctx.close()


def documented_statuses(operation) -> set[int]:
    return {int(code) for code in operation.definition.raw.get("responses", {})
            if str(code).isdigit()}


def test_fuzz_every_operation(fuzz_app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    started = time.monotonic()

    for operation in operations:
        allowed_5xx = {code for code in documented_statuses(operation) if code >= 500}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:
                response = case.call()
                statuses[response.status_code] += 1
                no_checkpoint = response.status_code == 503 \
                    and response.json().get("error") == "NoCheckpointError"
                if response.status_code >= 500 and response.status_code not in allowed_5xx \
                        and not no_checkpoint:
                    failures.append(f"{case.method} {case.formatted_path} body={case.body!r:.200}"
                                    f" query={case.query!r} → {response.status_code} "
                                    f"{response.text[:300]}")

            try:
                run()
            except Unsatisfiable:
                # negative mode: an operation without parameters has nothing to make invalid
                assert mode is GenerationMode.NEGATIVE, operation.label

    elapsed = time.monotonic() - started
    print(f"\nfuzz: {sum(statuses.values())} cases over {len(operations)} operations in "
          f"{elapsed:.1f}s; statuses {dict(sorted(statuses.items()))}")
    assert not failures, "\n".join(failures[:20])
    with TestClient(fuzz_app) as client:
        assert client.get("/internal/ping").json() == {}
        assert client.get("/sdapi/v1/samplers").status_code == 200
