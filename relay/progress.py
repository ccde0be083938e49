"""What a running release, promotion or rollback is doing, service by service.

The command line polls Prefect for every flow and task run of its invocation (they share a tag)
and hands them here as `RunView`s. This module turns them into steps that belong to a service
and an environment, then into one row per service (its current stage, state, elapsed time and
the canary's weight) for a live view, or into one line per change for output without a
terminal. It knows nothing of Prefect: a run is its names, its parent, its state and its times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# A task run's name is its task's name and a short random suffix (`unit-tests-3f2`). Names
# given by a template (`set-weight-50%`) have none.
_SUFFIX = re.compile(r"-[0-9a-f]{3}$")
_WEIGHT = re.compile(r"^set-weight-(\d+)%$")
FAILED = {"FAILED", "CRASHED"}
ENDED = {"COMPLETED", "CANCELLED", *FAILED}
# Steps that only keep books: they are in the Prefect UI, but are not what a service is doing.
QUIET = {
    "record-deployment",
    "record-unchanged",
    "record-rejection",
    # a service's build, deployment or promotion as a task of the release: its own steps follow
    "build-service",
    "ship-service",
    "roll-out-service",
}


@dataclass(frozen=True)
class RunView:
    """A flow run or task run, as far as progress needs it."""

    id: str
    kind: Literal["flow", "task"]
    name: str  # a flow run's name (`payments-dev`), a task run's (`unit-tests-3f2`)
    parent: str | None  # a flow run: the task run that started it; a task run: its flow run
    state: str  # the state's name: Running, Completed, Paused, AwaitingRetry...
    state_type: str  # RUNNING, COMPLETED, FAILED, PAUSED, CANCELLED...
    started: datetime | None = None
    ended: datetime | None = None
    parameters: dict[str, Any] = field(default_factory=dict)  # a flow run's


@dataclass(frozen=True)
class Step:
    """A task run that belongs to one service in one environment."""

    id: str
    service: str
    environment: str
    stage: str
    state: str
    state_type: str
    started: datetime
    ended: datetime | None


@dataclass(frozen=True)
class Row:
    service: str
    environment: str
    stage: str
    state: str
    seconds: float
    weight: int | None  # the canary's share of traffic, once it has one


@dataclass(frozen=True)
class Waiting:
    """A run paused for a person: an approval, or an inconclusive canary."""

    run_id: str
    name: str


@dataclass(frozen=True)
class Snapshot:
    steps: dict[str, Step]
    waiting: dict[str, Waiting]


def snapshot(runs: list[RunView], before: Snapshot | None = None) -> Snapshot:
    """The steps that have started, each with the service it belongs to; who is waited for.

    A step keeps the service it was first seen with (`before`): when a promotion's transaction
    rolls back, Prefect files its steps' final states under the promotion's own run."""
    flows = {r.id: r for r in runs if r.kind == "flow"}
    tasks = {r.id: r for r in runs if r.kind == "task"}
    wrappers = {r.parent for r in flows.values() if r.parent}  # task runs standing for subflows
    steps: dict[str, Step] = {}
    for run in tasks.values():
        stage = _SUFFIX.sub("", run.name)
        if run.id in wrappers or run.started is None or stage in QUIET:
            continue
        known = before.steps.get(run.id) if before is not None else None
        owner = (
            (known.service, known.environment)
            if known is not None
            else _owner(run.parent, flows, tasks) or _own_flow(run.parent, flows)
        )
        if owner is not None:
            steps[run.id] = Step(
                run.id, *owner, stage, run.state, run.state_type, run.started, run.ended
            )  # fmt: skip
    waiting = {r.id: Waiting(r.id, r.name) for r in flows.values() if r.state_type == "PAUSED"}
    return Snapshot(dict(sorted(steps.items(), key=lambda kv: kv[1].started)), waiting)


def rows(snap: Snapshot, now: datetime) -> list[Row]:
    """One row per service and environment, in the order they started: the newest step."""
    grouped: dict[tuple[str, str], list[Step]] = {}
    for step in snap.steps.values():
        grouped.setdefault((step.service, step.environment), []).append(step)
    return [_row(key, steps, now) for key, steps in grouped.items()]


def changes(before: Snapshot | None, after: Snapshot) -> list[tuple[datetime | None, str]]:
    """What happened between two snapshots, as (when, text): a step that started or failed.
    Completions are not lines of their own: the next step's start says it, and a service's
    last one shows in the command's result. (Who waits for a person: `new_waiting`.)"""
    old_steps = before.steps if before else {}
    lines: list[tuple[datetime | None, str]] = []
    for step in after.steps.values():
        where = f"{step.service} {step.environment}".strip()
        was = old_steps.get(step.id)
        if was is None:
            lines.append((step.started, f"{where}: {step.stage}"))
        if step.state_type in FAILED and (was is None or was.state_type not in FAILED):
            # Why is the command's one closing message: said here, it would be said twice.
            lines.append((step.ended or step.started, f"{where}: {step.stage} failed"))
    return lines


def new_waiting(before: Snapshot | None, after: Snapshot) -> list[Waiting]:
    """Runs that began waiting for a person since `before`."""
    return [w for w in after.waiting.values() if before is None or w.run_id not in before.waiting]


def _owner(
    flow_id: str | None, flows: dict[str, RunView], tasks: dict[str, RunView]
) -> tuple[str, str] | None:
    """The (service, environment) a run belongs to: the nearest flow run up the tree whose
    parameters name a service (a build, a service's deployment, a strategy's `spec`)."""
    seen: set[str] = set()
    while flow_id is not None and flow_id in flows and flow_id not in seen:
        seen.add(flow_id)
        run = flows[flow_id]
        found = _service_of(run.parameters)
        if found is not None:
            return found
        wrapper = tasks.get(run.parent or "")
        flow_id = wrapper.parent if wrapper is not None else None
    return None


def _own_flow(flow_id: str | None, flows: dict[str, RunView]) -> tuple[str, str] | None:
    """A step of no service (the release's checkout, an approval's wait) belongs to its flow
    run, shown by name (`release-1a2b3c4d`, `approve-shop-prod`)."""
    run = flows.get(flow_id or "")
    return (run.name, "") if run is not None else None


def _service_of(parameters: dict[str, Any]) -> tuple[str, str] | None:
    spec = parameters.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("service"), str):
        return spec["service"], str(spec.get("environment", ""))
    service = parameters.get("service")
    if isinstance(service, str):
        return service, str(parameters.get("environment", ""))
    return None


def _row(key: tuple[str, str], steps: list[Step], now: datetime) -> Row:
    current = steps[-1]
    running = any(s.state_type not in ENDED for s in steps)
    last = max((s.ended or now for s in steps), default=now)
    weights = [int(m.group(1)) for s in steps if (m := _WEIGHT.match(s.stage))]
    return Row(
        service=key[0],
        environment=key[1],
        stage=current.stage,
        state=current.state,
        seconds=((now if running else last) - steps[0].started).total_seconds(),
        weight=weights[-1] if weights else None,
    )
