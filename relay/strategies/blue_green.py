"""Blue/green: start the new version next to the stable one, switch all traffic, keep the
previous version running for a while so that switching back is instant."""

from __future__ import annotations

from relay.manifest import Environment
from relay.strategies.steps import (
    StartNew,
    StepPlan,
    StopPrevious,
    SwitchActive,
    optional_smoke_test,
    optional_watch,
)

STRATEGY = "blue_green"


def plan(env: Environment, has_previous: bool) -> StepPlan:
    """Start, smoke test if configured, switch, watch if configured, stop the previous version
    after `env.keep_previous_seconds`.

    A first deployment has nothing to switch back to, so it does not wait before the (no-op)
    stop.
    """
    keep_previous = env.keep_previous_seconds if has_previous else 0
    return StepPlan(
        strategy=STRATEGY,
        steps=[
            StartNew(),
            *optional_smoke_test(env),
            SwitchActive(),
            *optional_watch(env, has_previous),
            StopPrevious(after_seconds=keep_previous),
        ],
    )
