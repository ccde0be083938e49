"""The steps of a deployment plan, one kind per step, in the words of the manifest.

A glossary, as the steps use it:

* the *new* version - the one being deployed, started in the free slot;
* the *stable* (or *previous*) version - the one serving traffic before this deployment, if any;
* a *slot* - where one version runs (blue or green on docker); the new version takes the slot the
  stable one does not use.

A plan is data: `relay.strategies` builds it from an environment, a flow carries it out step by
step, and `StepPlan.describe` shows it to people. `Step` is a discriminated union on `kind`, so a
plan round-trips through JSON (e.g. as a Prefect artifact) without losing which step is which.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from relay.manifest import Environment

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
    "optional_smoke_test",
    "optional_watch",
]


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StartNew(_Step):
    """Start the new version in the free slot and wait until it is healthy; it gets no traffic."""

    kind: Literal["start_new"] = "start_new"

    def describe(self) -> str:
        return "start the new version in the free slot and wait until it is healthy"


class SmokeTest(_Step):
    """Run the environment's smoke tests against the new slot directly (`SERVICE_URL`)."""

    kind: Literal["smoke_test"] = "smoke_test"

    def describe(self) -> str:
        return "run the smoke tests against the new version directly, before it gets traffic"


class SetWeight(_Step):
    """Send `weight` percent of traffic to the new version and the rest to the stable one."""

    kind: Literal["set_weight"] = "set_weight"
    weight: Annotated[int, Field(ge=0, le=100)]

    def describe(self) -> str:
        return f"{self.weight}% of traffic to the new version"


class Pause(_Step):
    """Wait `seconds` before the next step, for the reason given."""

    kind: Literal["pause"] = "pause"
    seconds: Annotated[float, Field(ge=0)]
    reason: str

    def describe(self) -> str:
        return f"wait {_seconds(self.seconds)}: {self.reason}"


class Analyze(_Step):
    """Judge the new version's metrics over the last `window_seconds` (see `relay.analysis`)."""

    kind: Literal["analyze"] = "analyze"
    window_seconds: Annotated[float, Field(gt=0)]

    def describe(self) -> str:
        return f"judge the new version's metrics over the last {_seconds(self.window_seconds)}"


class SwitchActive(_Step):
    """Send all traffic to the new version."""

    kind: Literal["switch_active"] = "switch_active"

    def describe(self) -> str:
        return "all traffic to the new version"


class Watch(_Step):
    """Keep judging the new version, which takes all traffic now, for `seconds`; a failure puts
    the previous version back (on docker it still runs and only the traffic moves; on
    kubernetes it is rolled out again)."""

    kind: Literal["watch"] = "watch"
    seconds: Annotated[float, Field(gt=0)]

    def describe(self) -> str:
        return (
            f"watch the new version with all traffic for {_seconds(self.seconds)}; "
            "put the previous version back if it fails"
        )


class StopPrevious(_Step):
    """Stop the previous version, `after_seconds` after this step starts.

    Until it stops, switching back to it is instant; with nothing previous running it is a no-op.
    """

    kind: Literal["stop_previous"] = "stop_previous"
    after_seconds: Annotated[float, Field(ge=0)] = 0

    def describe(self) -> str:
        if not self.after_seconds:
            return "stop the previous version"
        return (
            f"keep the previous version running for {_seconds(self.after_seconds)} "
            "(a switch back is instant), then stop it"
        )


Step = Annotated[
    StartNew | SmokeTest | SetWeight | Pause | Analyze | SwitchActive | Watch | StopPrevious,
    Field(discriminator="kind"),
]


class StepPlan(BaseModel):
    """The steps of one deployment, in order, and the strategy that chose them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: str
    steps: list[Step]

    def describe(self) -> list[str]:
        """One line per step, for people: "10% of traffic to the new version"."""
        return [step.describe() for step in self.steps]


def optional_watch(env: Environment, has_previous: bool) -> list[Step]:
    """`[Watch(...)]` when the environment watches new versions and there is a previous one to
    put back, else `[]`."""
    return [Watch(seconds=env.watch_seconds)] if env.watch_seconds and has_previous else []


def optional_smoke_test(env: Environment) -> list[Step]:
    """`[SmokeTest()]` when the environment has smoke tests, else `[]`."""
    return [SmokeTest()] if env.smoke_tests else []


def _seconds(seconds: float) -> str:
    """`10.0` -> `"10s"`, `2.5` -> `"2.5s"`."""
    return f"{seconds:g}s"
