from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

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
)

EVERY_KIND = StepPlan(
    strategy="canary",
    steps=[
        StartNew(),
        SmokeTest(),
        SetWeight(weight=10),
        Pause(seconds=10, reason="let the canary serve"),
        Analyze(window_seconds=2.5),
        SwitchActive(),
        StopPrevious(),
        StopPrevious(after_seconds=30),
    ],
)


def test_describe_gives_one_line_per_step() -> None:
    assert EVERY_KIND.describe() == [
        "start the new version in the free slot and wait until it is healthy",
        "run the smoke tests against the new version directly, before it gets traffic",
        "10% of traffic to the new version",
        "wait 10s: let the canary serve",
        "judge the new version's metrics over the last 2.5s",
        "all traffic to the new version",
        "stop the previous version",
        "keep the previous version running for 30s (a switch back is instant), then stop it",
    ]


def test_a_plan_round_trips_through_json() -> None:
    copy = StepPlan.model_validate_json(EVERY_KIND.model_dump_json())

    assert copy == EVERY_KIND
    assert [type(step) for step in copy.steps] == [type(step) for step in EVERY_KIND.steps]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param({"kind": "set_weight", "weight": 101}, "set_weight.weight", id="weight>100"),
        pytest.param({"kind": "set_weight", "weight": -1}, "set_weight.weight", id="weight<0"),
        pytest.param({"kind": "pause", "seconds": -1, "reason": "x"}, "pause.seconds", id="pause"),
        pytest.param({"kind": "pause", "seconds": 1}, "pause.reason", id="pause-needs-reason"),
        pytest.param({"kind": "analyze", "window_seconds": 0}, "analyze.window_seconds", id="win"),
        pytest.param({"kind": "stop_previous", "after_seconds": -5}, "stop_previous", id="stop"),
        pytest.param({"kind": "switch_active", "weight": 5}, "switch_active.weight", id="extra"),
        pytest.param({"kind": "promote"}, "", id="unknown-kind"),
    ],
)
def test_invalid_steps_are_rejected(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(Step).validate_python(data)

    locations = [".".join(map(str, error["loc"])) for error in caught.value.errors()]
    assert any(location.startswith(field) for location in locations), locations


def test_steps_are_frozen() -> None:
    step = SetWeight(weight=10)

    with pytest.raises(ValidationError, match="frozen"):
        step.weight = 20  # type: ignore[misc]
