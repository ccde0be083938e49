"""Deployment strategies: how a new version replaces the running one, as a plan of steps.

Each strategy is one module with a `STRATEGY` name and a pure `plan(env, has_previous)`;
`plan_for` is the one place that knows them all. See `relay.strategies.steps` for the steps.
"""

from __future__ import annotations

from collections.abc import Callable

from relay.manifest import Environment
from relay.strategies import blue_green, canary, rolling
from relay.strategies.steps import (
    Analyze,
    Pause,
    SetWeight,
    SmokeTest,
    StartNew,
    Step,
    StepPlan,
    StopPrevious,
    SwitchActive,
    Watch,
)

__all__ = [
    "Analyze",
    "Pause",
    "SetWeight",
    "SmokeTest",
    "StartNew",
    "Step",
    "StepPlan",
    "StopPrevious",
    "SwitchActive",
    "Watch",
    "plan_for",
]

_PLANNERS: dict[str, Callable[[Environment, bool], StepPlan]] = {
    rolling.STRATEGY: rolling.plan,
    blue_green.STRATEGY: blue_green.plan,
    canary.STRATEGY: canary.plan,
}


def plan_for(env: Environment, has_previous: bool) -> StepPlan:
    """The steps that deploy a new version to `env` by its strategy.

    Args:
        env: The environment, whose `strategy` picks the plan.
        has_previous: Whether a previous version is serving there (False on a first deployment).

    Returns:
        The plan, whose `strategy` names the strategy that made it (a first canary deployment
        is rolling; see `relay.strategies.canary`).

    Raises:
        ValueError: When `env.strategy` is not a known strategy.
    """
    try:
        planner = _PLANNERS[env.strategy]
    except KeyError:
        known = ", ".join(_PLANNERS)
        raise ValueError(f"strategy {env.strategy!r} is not known; use one of: {known}") from None
    return planner(env, has_previous)
