"""relay.dora.attempt_metrics: one attempt's delivery metrics for CloudWatch (pure), by the
same rules as `relay metrics`' window (relay.dora.delivery_metrics)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from relay.dora import attempt_metrics, delivery_metrics
from relay.ledger import Outcome, Record

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IMAGE = "127.0.0.1:5000/shop/orders@sha256:" + "a" * 64


def record(
    id_: int, outcome: Outcome, minutes: float, strategy: str = "rolling", environment: str = "prod"
) -> Record:
    ended = T0 + timedelta(minutes=minutes)
    return Record(
        id=id_,
        app="shop",
        service="orders",
        environment=environment,
        image=IMAGE,
        commit="c" * 40,
        tree="t",
        strategy=strategy,
        outcome=outcome,
        started_at=ended - timedelta(minutes=1),
        ended_at=ended,
    )


def values(data: list[Any]) -> dict[str, float]:
    """MetricName -> value, for the data without an Outcome dimension."""
    return {
        d["MetricName"]: d["Value"]
        for d in data
        if all(dim["Name"] != "Outcome" for dim in d["Dimensions"])
    }


S, F, R, J = Outcome.SUCCEEDED, Outcome.FAILED, Outcome.ROLLED_BACK, Outcome.REJECTED


@pytest.mark.parametrize(
    ("outcome", "history", "commit_minutes", "expected"),
    [
        # a first success: deployed, no failure, lead time from the commit
        (S, [], -30, {"Deployments": 1, "Failures": 0, "LeadTimeSeconds": 1800}),
        # a rolled-back canary: a failure, no lead time
        (R, [(1, S, -60)], -30, {"Deployments": 1, "Failures": 1}),
        (F, [], -30, {"Deployments": 1, "Failures": 1}),
        # a rejection deployed nothing: counted, never a failure
        (J, [(1, R, -20)], -30, {"Deployments": 1}),
        # success after two failures (a rejection between them): restored since the first
        (
            S,
            [(4, R, -5), (3, J, -8), (2, F, -10), (1, S, -60)],
            -30,
            {"Deployments": 1, "Failures": 0, "LeadTimeSeconds": 1800, "TimeToRestoreSeconds": 600},
        ),
        # failures before an earlier success do not count
        (
            S,
            [(3, S, -5), (2, F, -10)],
            -30,
            {"Deployments": 1, "Failures": 0, "LeadTimeSeconds": 1800},
        ),
        # unknown commit time, or one after the deployment (clock skew): no lead time
        (S, [], None, {"Deployments": 1, "Failures": 0}),
        (S, [], 5, {"Deployments": 1, "Failures": 0}),
    ],
)
def test_attempt_metrics(
    outcome: Outcome,
    history: list[tuple[int, Outcome, float]],
    commit_minutes: float | None,
    expected: dict[str, float],
) -> None:
    commit_time = None if commit_minutes is None else T0 + timedelta(minutes=commit_minutes)
    earlier = [record(i, o, m) for i, o, m in history]
    data = attempt_metrics(record(10, outcome, 0), earlier, commit_time)
    assert values(data) == expected
    by_outcome = [d for d in data if {"Name": "Outcome", "Value": outcome.value} in d["Dimensions"]]
    assert [d["MetricName"] for d in by_outcome] == ["Deployments"]
    for d in data:
        assert d["Timestamp"] == T0
        assert d["Dimensions"][:3] == [
            {"Name": "App", "Value": "shop"},
            {"Name": "Service", "Value": "orders"},
            {"Name": "Environment", "Value": "prod"},
        ]


def test_a_rollback_has_no_lead_time_but_restores() -> None:
    """A rollback redeploys an old commit: its age is not a lead time; it does end an outage."""
    data = attempt_metrics(
        record(3, S, 0, strategy="rollback"), [record(2, F, -4)], T0 - timedelta(days=9)
    )
    assert values(data) == {"Deployments": 1, "TimeToRestoreSeconds": 240}, "no change: no Failures"


def test_records_appended_after_it_are_not_its_history() -> None:
    later_failure = record(11, F, 1)
    data = attempt_metrics(record(10, S, 0), [later_failure, record(9, S, -5)], None)
    assert "TimeToRestoreSeconds" not in values(data)


def test_a_failed_rollback_is_no_change_failure_here_nor_in_relay_metrics() -> None:
    """The same rule both ways: a rollback restores an old version, it is not a change."""
    failed = record(3, F, 0, strategy="rollback")
    assert "Failures" not in values(attempt_metrics(failed, [record(2, S, -5)], None))
    [window] = delivery_metrics([record(2, S, -5), failed], T0 + timedelta(minutes=1), days=1)
    assert window.failures == 0 and window.change_failure_rate == 0


def test_an_unchanged_service_is_no_attempt() -> None:
    assert attempt_metrics(record(4, Outcome.UNCHANGED, 0), [record(2, S, -5)], None) == []
