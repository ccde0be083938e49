from __future__ import annotations

from typing import Any

import pytest

from relay.manifest import Environment
from relay.strategies import blue_green
from relay.strategies.steps import SmokeTest, StartNew, Step, StopPrevious, SwitchActive


def env(**settings: Any) -> Environment:
    return Environment(secrets="staging-config", strategy="blue_green", **settings)


@pytest.mark.parametrize(
    ("environment", "has_previous", "expected"),
    [
        pytest.param(
            env(),
            True,
            [StartNew(), SwitchActive(), StopPrevious(after_seconds=30)],
            id="keeps-the-previous-version-30s-by-default",
        ),
        pytest.param(
            env(keep_previous_seconds=600, smoke_tests=["make", "smoke"]),
            True,
            [StartNew(), SmokeTest(), SwitchActive(), StopPrevious(after_seconds=600)],
            id="smoke-tests-and-a-longer-keep",
        ),
        pytest.param(
            env(keep_previous_seconds=0),
            True,
            [StartNew(), SwitchActive(), StopPrevious(after_seconds=0)],
            id="stop-at-once",
        ),
        pytest.param(
            env(keep_previous_seconds=600),
            False,
            [StartNew(), SwitchActive(), StopPrevious(after_seconds=0)],
            id="first-deployment-has-nothing-to-keep",
        ),
    ],
)
def test_plan(environment: Environment, has_previous: bool, expected: list[Step]) -> None:
    plan = blue_green.plan(environment, has_previous)

    assert plan.strategy == "blue_green"
    assert plan.steps == expected
