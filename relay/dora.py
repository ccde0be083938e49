"""Delivery metrics (DORA) per service and environment, from ledger records (pure, no I/O).

The ledger records every attempt, so the four DORA measures follow from it over a window:

* deployment frequency: successful deployments per day (a rollback restores an old version;
  it is not a change delivered, so it does not count);
* lead time for changes: commit → successful deployment, the median over the window's
  successes whose commit time is known (records from schema 3 on; rollbacks excluded);
* change failure rate: failed or rolled-back deployments over all that deployed something
  (succeeded, failed, rolled back; a rejection deployed nothing, a rollback is no change);
* time to restore: from the first failure after a success to the next success there (a fix
  or a rollback), the median over the window.

`delivery_metrics` computes them, `format_metrics` is `relay metrics`' table, `metric_data`
the same numbers for CloudWatch (`relay.aws.cloudwatch.put_metrics`), `table_rows` for a
Prefect table artifact. `attempt_metrics` is one attempt's share of them, sent to CloudWatch
after every ledger record: both follow the same rules (`_is_change`, `_FAILED`, runs of
failures), so a number in CloudWatch and in `relay metrics` means the same thing.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from relay.aws.cloudwatch import Dimension, MetricDatum
from relay.ledger import Outcome, Record
from relay.tables import table

__all__ = [
    "DeliveryMetrics",
    "attempt_metrics",
    "delivery_metrics",
    "format_metrics",
    "metric_data",
    "table_rows",
]

_FAILED = {Outcome.FAILED, Outcome.ROLLED_BACK, Outcome.WATCH_FAILED}
_DEPLOYED = {Outcome.SUCCEEDED, *_FAILED}
ROLLBACK = "rollback"  # the strategy of the rollback flow's records


@dataclass(frozen=True)
class DeliveryMetrics:
    """The DORA measures of one service in one environment over `days` days."""

    app: str
    service: str
    environment: str
    days: int
    deployments: int  # successful, rollbacks excluded
    failures: int  # failed or rolled back
    restores: int  # runs of failures that a success ended
    lead_time_seconds: float | None  # median; None: no success with a known commit time
    time_to_restore_seconds: float | None  # median; None: nothing was restored

    @property
    def deployments_per_day(self) -> float:
        return self.deployments / self.days

    @property
    def change_failure_rate(self) -> float | None:
        """None when nothing was deployed: no changes, no rate."""
        changes = self.deployments + self.failures
        return self.failures / changes if changes else None


def delivery_metrics(records: Iterable[Record], now: datetime, days: int) -> list[DeliveryMetrics]:
    """One `DeliveryMetrics` per (environment, service) with records ending in the `days`
    before `now`, ordered by environment (first seen) then service."""
    if days < 1:
        raise ValueError(f"days: {days} must be at least 1")
    since = now - timedelta(days=days)
    groups: dict[tuple[str, str, str], list[Record]] = {}
    for record in sorted(records, key=lambda r: (r.ended_at, r.id or 0)):
        if since <= record.ended_at <= now:
            groups.setdefault((record.app, record.environment, record.service), []).append(record)
    return [_measure(app, env, svc, days, group) for (app, env, svc), group in groups.items()]


def _is_change(record: Record) -> bool:
    """A deployment of something new: it deployed (not rejected, not left unchanged) and it is
    not a rollback, which restores an old version."""
    return record.strategy != ROLLBACK and record.outcome in _DEPLOYED


def _lead_seconds(record: Record, commit_time: datetime | None) -> float | None:
    """Commit → this success; None for a rollback, an unknown commit time, or clock skew."""
    if record.outcome != Outcome.SUCCEEDED or record.strategy == ROLLBACK or commit_time is None:
        return None
    lead = (record.ended_at - commit_time).total_seconds()
    return lead if lead >= 0 else None


def _measure(
    app: str, environment: str, service: str, days: int, records: Sequence[Record]
) -> DeliveryMetrics:
    changes = [r for r in records if _is_change(r)]
    successes = [r for r in changes if r.outcome == Outcome.SUCCEEDED]
    leads = [lead for r in successes if (lead := _lead_seconds(r, r.committed_at)) is not None]
    restores = _restore_seconds(records)
    return DeliveryMetrics(
        app=app,
        service=service,
        environment=environment,
        days=days,
        deployments=len(successes),
        failures=sum(r.outcome in _FAILED for r in changes),
        restores=len(restores),
        lead_time_seconds=statistics.median(leads) if leads else None,
        time_to_restore_seconds=statistics.median(restores) if restores else None,
    )


def _restore_seconds(records: Sequence[Record]) -> list[float]:
    """For each run of failures ended by a success, in time order: first failure → success.
    Rejections neither start nor end a run (nothing was deployed)."""
    restores: list[float] = []
    first_failure: Record | None = None
    for record in records:
        if record.outcome in _FAILED and first_failure is None:
            first_failure = record
        elif record.outcome == Outcome.SUCCEEDED and first_failure is not None:
            restores.append((record.ended_at - first_failure.ended_at).total_seconds())
            first_failure = None
    return restores


def attempt_metrics(
    record: Record, history: Iterable[Record], commit_time: datetime | None
) -> list[MetricDatum]:
    """One deployment attempt's delivery metrics for CloudWatch.

    Args:
        record: The attempt, as the ledger saved it.
        history: Earlier attempts of the same service in the same environment, newest first
            (as `Ledger.history` returns them); `record` itself and anything appended after it
            (by id) are skipped.
        commit_time: When the deployed commit was made, for the lead time; None when unknown.

    Returns:
        * `Deployments` (Count, 1) for every attempt, once with App/Service/Environment and once
          more with Outcome as well: CloudWatch keys a metric by its exact dimensions, so the
          total and the split by outcome are separate metrics. An unchanged service is no
          attempt: nothing.
        * `Failures` (Count, 1 failed or rolled back, 0 succeeded) for a change only: its
          average over a period is the change failure rate. A rejection deployed nothing and a
          rollback is no change (as in `relay metrics`): neither has one.
        * `LeadTimeSeconds`: commit → success of a change with a known commit time.
        * `TimeToRestoreSeconds`: when a success follows failed or rolled-back attempts, from
          the end of the first of them to the end of this success (a fix or a rollback).
    """
    if record.outcome == Outcome.UNCHANGED:
        return []
    base = [
        Dimension(Name="App", Value=record.app),
        Dimension(Name="Service", Value=record.service),
        Dimension(Name="Environment", Value=record.environment),
    ]
    with_outcome = [*base, Dimension(Name="Outcome", Value=record.outcome.value)]

    def datum(name: str, value: float, unit: str, dims: list[Dimension] = base) -> MetricDatum:
        return MetricDatum(
            MetricName=name,
            Dimensions=list(dims),
            Timestamp=record.ended_at,
            Value=value,
            Unit=unit,
        )

    data = [datum("Deployments", 1, "Count"), datum("Deployments", 1, "Count", with_outcome)]
    if _is_change(record):
        data.append(datum("Failures", 1 if record.outcome in _FAILED else 0, "Count"))
    if record.outcome != Outcome.SUCCEEDED:
        return data
    lead = _lead_seconds(record, commit_time)
    if lead is not None:
        data.append(datum("LeadTimeSeconds", lead, "Seconds"))
    earlier = [r for r in history if record.id is None or r.id is None or r.id < record.id]
    first_failure = _first_failure_since_success(earlier)
    if first_failure is not None:
        restore = (record.ended_at - first_failure.ended_at).total_seconds()
        data.append(datum("TimeToRestoreSeconds", max(restore, 0.0), "Seconds"))
    return data


def _first_failure_since_success(newest_first: Iterable[Record]) -> Record | None:
    """The oldest failed or rolled-back attempt after the latest success (records newest
    first); rejections and unchanged records neither start nor end a run of failures."""
    first: Record | None = None
    for earlier in newest_first:
        if earlier.outcome == Outcome.SUCCEEDED:
            break
        if earlier.outcome in _FAILED:
            first = earlier
    return first


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def table_rows(metrics: Iterable[DeliveryMetrics]) -> list[dict[str, str | int]]:
    """Rows for a table (`relay metrics`, a Prefect table artifact)."""
    return [
        {
            "environment": m.environment,
            "service": m.service,
            "deploys": m.deployments,
            "per day": f"{m.deployments_per_day:.2f}",
            "lead time (median)": _duration(m.lead_time_seconds),
            "change failure rate": _rate(m.change_failure_rate),
            "failures": m.failures,
            "time to restore (median)": _duration(m.time_to_restore_seconds),
        }
        for m in metrics
    ]


def format_metrics(metrics: Sequence[DeliveryMetrics]) -> str:
    """`relay metrics`: one line per environment and service."""
    rows = table_rows(metrics)
    if not rows:
        return ""
    headers = [h.upper() for h in rows[0]]
    return table(headers, [[str(v) for v in row.values()] for row in rows])


def metric_data(metrics: Iterable[DeliveryMetrics], now: datetime) -> list[MetricDatum]:
    """The aggregates as CloudWatch data (dimensions App, Service, Environment, WindowDays):
    `DeploymentsPerDay`, `ChangeFailureRate`, `LeadTimeMedianSeconds`,
    `TimeToRestoreMedianSeconds`; a measure without data is left out, not sent as 0."""
    data: list[MetricDatum] = []
    for m in metrics:
        dims = [
            Dimension(Name="App", Value=m.app),
            Dimension(Name="Service", Value=m.service),
            Dimension(Name="Environment", Value=m.environment),
            Dimension(Name="WindowDays", Value=str(m.days)),
        ]
        values: list[tuple[str, float | None, str]] = [
            ("DeploymentsPerDay", m.deployments_per_day, "Count"),
            ("ChangeFailureRate", m.change_failure_rate, "None"),
            ("LeadTimeMedianSeconds", m.lead_time_seconds, "Seconds"),
            ("TimeToRestoreMedianSeconds", m.time_to_restore_seconds, "Seconds"),
        ]
        data += [
            MetricDatum(MetricName=name, Dimensions=dims, Timestamp=now, Value=value, Unit=unit)
            for name, value, unit in values
            if value is not None
        ]
    return data
