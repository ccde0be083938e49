"""Canary: move traffic to the new version in steps, judging it after each one, before it
takes all traffic."""

from __future__ import annotations

from relay.manifest import Analysis, Environment
from relay.strategies import rolling
from relay.strategies.steps import (
    Analyze,
    Pause,
    SetWeight,
    StartNew,
    Step,
    StepPlan,
    StopPrevious,
    SwitchActive,
    optional_smoke_test,
    optional_watch,
)

STRATEGY = "canary"


def plan(env: Environment, has_previous: bool) -> StepPlan:
    """Start, smoke test if configured, then for each canary weight below 100: set the weight,
    let the new version serve for `analysis.interval_seconds`, judge it; finally switch all
    traffic, watch it if configured, and stop the previous version.

    A first deployment (`has_previous` False) gets the rolling plan instead. With no stable
    version there is nothing to split traffic with: at every weight all requests would still go
    to the new version, so the steps would only slow the deployment down, and there are no users
    on a working version to protect from a bad one.
    """
    if not has_previous:
        return rolling.plan(env, has_previous)
    steps: list[Step] = [StartNew(), *optional_smoke_test(env)]
    for weight in env.canary_steps:
        if weight < 100:  # the last weight, 100, is the switch
            steps += _canary_step(weight, env.analysis)
    steps += [SwitchActive(), *optional_watch(env, has_previous), StopPrevious()]
    return StepPlan(strategy=STRATEGY, steps=steps)


def _canary_step(weight: int, analysis: Analysis) -> list[Step]:
    """Send `weight`% to the new version, let it serve for a while, then judge that while."""
    return [
        SetWeight(weight=weight),
        Pause(
            seconds=analysis.interval_seconds,
            reason=f"let the new version serve {weight}% of traffic before it is judged",
        ),
        Analyze(window_seconds=analysis.interval_seconds),
    ]
