"""Rolling: start the new version, then move all traffic to it at once."""

from __future__ import annotations

from relay.manifest import Environment
from relay.strategies.steps import (
    StartNew,
    StepPlan,
    StopPrevious,
    SwitchActive,
    optional_smoke_test,
)

STRATEGY = "rolling"


def plan(env: Environment, has_previous: bool) -> StepPlan:
    """Start, smoke test if configured, switch, stop the previous version right away.

    `has_previous` changes nothing: with no previous version, stopping it is a no-op.
    """
    return StepPlan(
        strategy=STRATEGY,
        steps=[
            StartNew(),
            *optional_smoke_test(env),
            SwitchActive(),
            StopPrevious(),
        ],
    )
