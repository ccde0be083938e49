"""DORA metrics from constructed ledger records (relay.dora): frequency, lead time median,
change failure rate, time to restore after a failure; and their CloudWatch and table forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from relay.dora import delivery_metrics, format_metrics, metric_data, table_rows
from relay.ledger import Outcome, Record

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
IMAGE = "127.0.0.1:5000/shop/payments@sha256:" + "a" * 64


def record(
    hours_ago: float,
    outcome: Outcome,
    lead_hours: float | None = None,
    strategy: str = "canary",
    service: str = "payments",
    environment: str = "prod",
) -> Record:
    ended = NOW - timedelta(hours=hours_ago)
    return Record(
        app="shop",
        service=service,
        environment=environment,
        image=IMAGE,
        commit="c" * 40,
        tree="t" * 40,
        strategy=strategy,
        outcome=outcome,
        started_at=ended - timedelta(minutes=5),
        ended_at=ended,
        committed_at=None if lead_hours is None else ended - timedelta(hours=lead_hours),
    )


def test_frequency_lead_time_failure_rate_and_restore() -> None:
    records = [
        record(200, Outcome.SUCCEEDED, lead_hours=1),
        record(100, Outcome.SUCCEEDED, lead_hours=3),
        record(50, Outcome.ROLLED_BACK, lead_hours=2),  # the canary rolled back
        record(49, Outcome.REJECTED),  # nothing deployed: no failure, no restore
        record(48, Outcome.FAILED),
        record(46, Outcome.SUCCEEDED, lead_hours=10),  # the fix: restored 4 h after 50 h ago
        record(10, Outcome.SUCCEEDED, strategy="rollback"),  # a restore, not a change
        record(24 * 40, Outcome.SUCCEEDED, lead_hours=100),  # outside the 30-day window
    ]
    [m] = delivery_metrics(records, NOW, days=30)
    assert (m.app, m.service, m.environment, m.days) == ("shop", "payments", "prod", 30)
    assert m.deployments == 3 and m.deployments_per_day == pytest.approx(3 / 30)
    assert m.lead_time_seconds == 3 * 3600  # median of 1, 3 and 10 hours
    assert m.failures == 2 and m.change_failure_rate == pytest.approx(2 / 5)
    assert m.restores == 1 and m.time_to_restore_seconds == 4 * 3600


def test_a_rollback_ends_a_run_of_failures() -> None:
    records = [
        record(30, Outcome.SUCCEEDED),
        record(20, Outcome.ROLLED_BACK),
        record(19.5, Outcome.SUCCEEDED, strategy="rollback"),
        record(10, Outcome.FAILED),
        record(8, Outcome.FAILED),
    ]
    [m] = delivery_metrics(records, NOW, days=7)
    assert m.time_to_restore_seconds == 30 * 60 and m.restores == 1  # the last run is open
    assert m.lead_time_seconds is None  # no commit times (records before schema 3)
    assert m.change_failure_rate == pytest.approx(3 / 4)


def test_one_row_per_environment_and_service() -> None:
    records = [
        record(5, Outcome.SUCCEEDED, environment="dev", service="orders"),
        record(4, Outcome.SUCCEEDED, environment="dev"),
        record(3, Outcome.SUCCEEDED),
    ]
    metrics = delivery_metrics(records, NOW, days=1)
    assert [(m.environment, m.service) for m in metrics] == [
        ("dev", "orders"),
        ("dev", "payments"),
        ("prod", "payments"),
    ]
    table = format_metrics(metrics)
    assert table.splitlines()[0].startswith("ENVIRONMENT  SERVICE")
    assert len(table.splitlines()) == 4
    assert table_rows(metrics)[0]["change failure rate"] == "0%"


def test_cloudwatch_data_leave_out_what_has_no_value() -> None:
    [m] = delivery_metrics([record(3, Outcome.SUCCEEDED, lead_hours=2)], NOW, days=30)
    data = {d["MetricName"]: d for d in metric_data([m], NOW)}
    assert set(data) == {"DeploymentsPerDay", "ChangeFailureRate", "LeadTimeMedianSeconds"}
    assert data["LeadTimeMedianSeconds"]["Value"] == 7200
    assert {"Name": "WindowDays", "Value": "30"} in data["ChangeFailureRate"]["Dimensions"]


def test_a_window_must_have_days() -> None:
    with pytest.raises(ValueError, match="days: 0 must be at least 1"):
        delivery_metrics([], NOW, days=0)
