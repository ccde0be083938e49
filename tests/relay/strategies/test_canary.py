from __future__ import annotations

from typing import Any

import pytest

from relay.manifest import Analysis, Environment
from relay.strategies import canary, rolling
from relay.strategies.steps import Pause, StepPlan


def env(**settings: Any) -> Environment:
    return Environment(secrets="prod-config", strategy="canary", **settings)


def outline(plan: StepPlan) -> list[str]:
    """Each step as its kind and its numbers, such as 'set_weight 10' or 'pause 2.5'."""
    lines = []
    for step in plan.steps:
        numbers = [f"{value:g}" for name, value in step if name not in ("kind", "reason")]
        lines.append(" ".join([step.kind, *numbers]))
    return lines


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        pytest.param(
            env(),
            [
                "start_new",
                *("set_weight 10", "pause 10", "analyze 10"),
                *("set_weight 50", "pause 10", "analyze 10"),
                "switch_active",
                "stop_previous 0",
            ],
            id="defaults",
        ),
        pytest.param(
            env(
                canary_steps=[5, 25, 60, 100],
                analysis=Analysis(interval_seconds=2.5),
                smoke_tests="pytest -q tests/smoke",
                keep_previous_seconds=300,
            ),
            [
                "start_new",
                "smoke_test",
                *("set_weight 5", "pause 2.5", "analyze 2.5"),
                *("set_weight 25", "pause 2.5", "analyze 2.5"),
                *("set_weight 60", "pause 2.5", "analyze 2.5"),
                "switch_active",
                "stop_previous 0",
            ],
            id="custom-steps-interval-and-smoke-tests",
        ),
        pytest.param(
            env(canary_steps=[100]),
            ["start_new", "switch_active", "stop_previous 0"],
            id="only-100-is-a-plain-switch",
        ),
        pytest.param(
            # The manifest rejects steps that do not end at 100; the plan still ends switched.
            env(canary_steps=[10, 50]),
            [
                "start_new",
                *("set_weight 10", "pause 10", "analyze 10"),
                *("set_weight 50", "pause 10", "analyze 10"),
                "switch_active",
                "stop_previous 0",
            ],
            id="without-a-final-100",
        ),
    ],
)
def test_plan(environment: Environment, expected: list[str]) -> None:
    plan = canary.plan(environment, has_previous=True)

    assert plan.strategy == "canary"
    assert outline(plan) == expected


def test_each_pause_says_why() -> None:
    pauses = [step for step in canary.plan(env(), True).steps if isinstance(step, Pause)]

    assert [pause.reason for pause in pauses] == [
        "let the new version serve 10% of traffic before it is judged",
        "let the new version serve 50% of traffic before it is judged",
    ]


@pytest.mark.parametrize(
    "environment",
    [
        pytest.param(env(), id="defaults"),
        pytest.param(env(smoke_tests="pytest -q tests/smoke"), id="with-smoke-tests"),
    ],
)
def test_first_deployment_is_rolling(environment: Environment) -> None:
    plan = canary.plan(environment, has_previous=False)

    assert plan == rolling.plan(environment, has_previous=False)
    assert plan.strategy == "rolling"
