from __future__ import annotations

from typing import Any, get_args

import pytest

import relay.strategies
from relay.manifest import Environment
from relay.strategies import Step, plan_for


def env(**settings: Any) -> Environment:
    return Environment(secrets="prod-config", **settings)


@pytest.mark.parametrize(
    ("environment", "has_previous", "strategy", "kinds"),
    [
        pytest.param(
            env(),
            True,
            "rolling",
            ["start_new", "switch_active", "stop_previous"],
            id="rolling-by-default",
        ),
        pytest.param(
            env(strategy="blue_green", smoke_tests="pytest -q tests/smoke"),
            True,
            "blue_green",
            ["start_new", "smoke_test", "switch_active", "stop_previous"],
            id="blue-green",
        ),
        pytest.param(
            env(strategy="canary", canary_steps=[20, 100]),
            True,
            "canary",
            ["start_new", "set_weight", "pause", "analyze", "switch_active", "stop_previous"],
            id="canary",
        ),
        pytest.param(
            env(strategy="canary"),
            False,
            "rolling",
            ["start_new", "switch_active", "stop_previous"],
            id="canary-first-deployment-is-rolling",
        ),
        pytest.param(
            env(strategy="blue_green"),
            False,
            "blue_green",
            ["start_new", "switch_active", "stop_previous"],
            id="blue-green-first-deployment",
        ),
        pytest.param(
            env(strategy="blue_green", watch_seconds=30),
            True,
            "blue_green",
            ["start_new", "switch_active", "watch", "stop_previous"],
            id="blue-green-watched-while-the-previous-still-runs",
        ),
        pytest.param(
            env(strategy="canary", canary_steps=[50, 100], watch_seconds=30),
            True,
            "canary",
            ["start_new", "set_weight", "pause", "analyze", "switch_active", "watch"]
            + ["stop_previous"],
            id="canary-watched-after-its-last-step",
        ),
        pytest.param(
            env(strategy="blue_green", watch_seconds=30),
            False,
            "blue_green",
            ["start_new", "switch_active", "stop_previous"],
            id="nothing-to-put-back-nothing-watched",
        ),
    ],
)
def test_plan_for_picks_the_environment_strategy(
    environment: Environment, has_previous: bool, strategy: str, kinds: list[str]
) -> None:
    plan = plan_for(environment, has_previous)

    assert plan.strategy == strategy
    assert [step.kind for step in plan.steps] == kinds


def test_plan_for_knows_every_strategy_the_manifest_allows() -> None:
    allowed = get_args(Environment.model_fields["strategy"].annotation)

    assert allowed == ("rolling", "blue_green", "canary")
    for strategy in allowed:
        assert plan_for(env(strategy=strategy), True).strategy == strategy


def test_unknown_strategy_names_the_known_ones() -> None:
    environment = Environment.model_construct(secrets="prod-config", strategy="linear")

    with pytest.raises(ValueError, match="strategy 'linear' is not known; use one of: rolling, "):
        plan_for(environment, True)


def test_exported_members() -> None:
    step_kinds = get_args(get_args(Step)[0])

    assert {kind.__name__ for kind in step_kinds} <= set(relay.strategies.__all__)
    for name in relay.strategies.__all__:
        assert hasattr(relay.strategies, name), name
