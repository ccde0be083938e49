from __future__ import annotations

from typing import Any

import pytest

from relay.manifest import Environment
from relay.strategies import rolling
from relay.strategies.steps import SmokeTest, StartNew, Step, StopPrevious, SwitchActive


def env(**settings: Any) -> Environment:
    return Environment(secrets="dev-config", **settings)


@pytest.mark.parametrize(
    ("environment", "has_previous", "expected"),
    [
        pytest.param(
            env(), True, [StartNew(), SwitchActive(), StopPrevious()], id="without-smoke-tests"
        ),
        pytest.param(
            env(smoke_tests="pytest -q tests/smoke"),
            True,
            [StartNew(), SmokeTest(), SwitchActive(), StopPrevious()],
            id="with-smoke-tests",
        ),
        pytest.param(
            env(keep_previous_seconds=120),
            True,
            [StartNew(), SwitchActive(), StopPrevious()],
            id="keep-previous-is-blue-green-only",
        ),
        pytest.param(
            env(), False, [StartNew(), SwitchActive(), StopPrevious()], id="first-deployment"
        ),
    ],
)
def test_plan(environment: Environment, has_previous: bool, expected: list[Step]) -> None:
    plan = rolling.plan(environment, has_previous)

    assert plan.strategy == "rolling"
    assert plan.steps == expected
