"""Recorded analysis windows, and replaying them under other limits.

Every canary step's window is kept with its deployment: both versions' counters, when the window
started and ended, the limits in force, and the verdict with its reasons. Replaying asks "would
this canary have passed with a 2 % limit?": the same windows, judged again by `relay.analysis`
with other limits, and where the canary would have stopped. Pure: windows in, verdicts out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from relay.analysis import (
    CheckResult,
    Judgement,
    ServerCounters,
    Verdict,
    judge,
    next_step,
    with_alarms,
    with_checks,
)
from relay.manifest import Analysis

__all__ = [
    "Counters",
    "Replay",
    "ReplayedStep",
    "Window",
    "replay",
    "replay_rows",
    "window_rows",
    "with_limits",
]


class Counters(BaseModel):
    """One version's traffic in a window, as stored (`ServerCounters` in JSON)."""

    model_config = ConfigDict(frozen=True)

    requests: int
    errors: int
    response_ms_total: float

    @staticmethod
    def of(counters: ServerCounters) -> Counters:
        return Counters(
            requests=counters.requests,
            errors=counters.errors,
            response_ms_total=counters.response_ms_total,
        )

    def server(self) -> ServerCounters:
        return ServerCounters(self.requests, self.errors, self.response_ms_total)


class Window(BaseModel):
    """One judged canary step, as the ledger keeps it.

    Attributes:
        run_id: The canary's strategy run (Prefect flow run id).
        deploy_run_id: The deployment run above it, the one its ledger record names.
        step: 1 for the first canary weight, and so on; `steps` of them were planned.
        alarms: The CloudWatch alarms' states read at the end of the window (name -> state).
        checks: The environment's own Prometheus checks' values, each with its limits.
    """

    model_config = ConfigDict(frozen=True)

    app: str
    environment: str
    service: str
    image: str
    run_id: str
    deploy_run_id: str | None = None
    step: int
    steps: int
    weight: int
    started_at: datetime
    ended_at: datetime
    canary: Counters
    stable: Counters | None = None
    limits: Analysis
    alarms: dict[str, str] = {}
    checks: tuple[CheckResult, ...] = ()
    verdict: Verdict
    reasons: list[str] = []

    def judge(self, limits: Analysis | None = None) -> Judgement:
        """This window judged under `limits` (its own when None), its alarms and checks
        counted (a check keeps the limits it had)."""
        stable = self.stable.server() if self.stable is not None else None
        judged = judge(self.canary.server(), limits or self.limits, stable)
        return with_checks(with_alarms(judged, self.alarms), self.checks)


@dataclass(frozen=True)
class ReplayedStep:
    window: Window
    judgement: Judgement
    action: str  # "continue" | "stop" | "ask"


@dataclass(frozen=True)
class Replay:
    """The recorded windows of one canary judged again, step by step, up to where it stops."""

    limits: Analysis
    steps: list[ReplayedStep]
    recorded: int  # windows recorded for the run
    planned: int  # canary steps the run planned

    @property
    def stopped_at(self) -> ReplayedStep | None:
        last = self.steps[-1] if self.steps else None
        return last if last is not None and last.action != "continue" else None

    def summary(self) -> str:
        """One sentence: passed, or where and why it would have stopped."""
        stop = self.stopped_at
        if stop is not None:
            verb = {
                ("stop", Verdict.FAILED): "fails",
                ("stop", Verdict.INCONCLUSIVE): "stops, inconclusive (on_inconclusive: fail),",
            }.get((stop.action, stop.judgement.verdict), "waits for a person")
            return (
                f"with these limits the canary {verb} at step {stop.window.step} "
                f"({stop.window.weight}%): {'; '.join(stop.judgement.reasons)}"
            )
        if self.recorded < self.planned:
            return (
                f"with these limits the canary would have passed the {self.recorded} step(s) "
                f"recorded; the run stopped there, so its other {self.planned - self.recorded} "
                "step(s) have no windows to judge"
            )
        return f"with these limits the canary passes all {self.planned} step(s)"


def with_limits(limits: Analysis, changes: dict[str, Any]) -> Analysis:
    """`limits` with some of them changed (None: unchanged), checked as relay.yaml's would be."""
    given = {name: value for name, value in changes.items() if value is not None}
    return Analysis.model_validate(limits.model_dump() | given)


def replay(windows: Sequence[Window], changes: dict[str, Any] | None = None) -> Replay:
    """Judge one run's windows again, in step order, with `changes` to the limits recorded in
    the first window; stop where the canary would have stopped (a failure, or an inconclusive
    step that `on_inconclusive` fails or hands to a person)."""
    if not windows:
        raise ValueError("no recorded windows to replay")
    ordered = sorted(windows, key=lambda w: w.step)
    limits = with_limits(ordered[0].limits, changes or {})
    steps: list[ReplayedStep] = []
    for window in ordered:
        judgement = window.judge(limits)
        action = next_step(judgement.verdict, judgement.reasons, window.weight, limits, 1, 1)
        steps.append(ReplayedStep(window, judgement, action.action))
        if action.action != "continue":
            break
    return Replay(limits, steps, recorded=len(ordered), planned=ordered[0].steps)


def window_rows(windows: Sequence[Window]) -> list[dict[str, str]]:
    """One row per window, for the UI's table artifact and `relay analysis`."""
    return [_row(w, w.verdict.value, w.reasons) for w in windows]


def replay_rows(replayed: Replay) -> list[dict[str, str]]:
    return [_row(s.window, s.judgement.verdict.value, s.judgement.reasons) for s in replayed.steps]


def _row(window: Window, verdict: str, reasons: Sequence[str]) -> dict[str, str]:
    canary, stable = window.canary.server(), window.stable.server() if window.stable else None
    return {
        "step": f"{window.step}/{window.steps}",
        "weight": f"{window.weight}%",
        "window": f"{window.started_at:%H:%M:%S}-{window.ended_at:%H:%M:%S}",
        "canary": _side(canary),
        "stable": _side(stable) if stable is not None else "-",
        "alarms": ", ".join(f"{n}: {s}" for n, s in window.alarms.items()),
        "verdict": verdict,
        "reasons": "; ".join(reasons),
    }


def _side(counters: ServerCounters) -> str:
    """`120 req, 3 err (2.5%), 41 ms`: one version's traffic in a window."""
    rate = counters.errors / counters.requests if counters.requests else 0.0
    return (
        f"{counters.requests} req, {counters.errors} err ({rate:.1%}), "
        f"{counters.mean_response_ms:.0f} ms"
    )
