"""Amazon CloudWatch: delivery metrics out, alarm states and request metrics in.

Relay publishes what it knows about deliveries as custom metrics, so a team graphs and alarms on
them next to its services' own metrics, and reads alarms that the team owns, so a canary step or
a production approval stops while one of them is in ALARM.

* `put_metrics` sends metric data (`relay.dora` computes them from the ledger, by the same
  rules as `relay metrics`) with `PutMetricData`, in chunks the API accepts.
* `alarm_states` / `alarms_in_alarm` read alarms by name with `DescribeAlarms`; a name that does
  not exist is a configuration error (a typo must not silently disable a safety check).
* `version_traffic` reads a canary's and its stable version's requests, errors and response
  time over one window with `GetMetricData` (`analysis.metrics: cloudwatch`); a version with no
  data is None, for the judge to call inconclusive, never a silent pass.

Every function takes a boto3 CloudWatch client made by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict

from relay.analysis import ServerCounters
from relay.aws.errors import call
from relay.errors import TerminalError
from relay.manifest import CloudWatchMetrics
from relay.manifest.fields import fill_placeholders

__all__ = [
    "ALARM",
    "Dimension",
    "MetricDatum",
    "alarm_states",
    "alarms_in_alarm",
    "put_metrics",
    "version_traffic",
]

ALARM = "ALARM"
# PutMetricData takes at most 1000 data per request; DescribeAlarms at most 100 names.
_PUT_CHUNK = 1000
_DESCRIBE_CHUNK = 100

MISSING_ALARM = (
    "CloudWatch alarm {names} does not exist in {region}; create it "
    "(aws cloudwatch put-metric-alarm --alarm-name ...) or fix the name in {where}"
)


class Dimension(TypedDict):
    Name: str
    Value: str


class MetricDatum(TypedDict):
    """One element of PutMetricData's `MetricData`, in the API's own spelling."""

    MetricName: str
    Dimensions: list[Dimension]
    Timestamp: datetime
    Value: float
    Unit: str


def put_metrics(client: Any, namespace: str, data: Sequence[MetricDatum]) -> int:
    """Publish `data` under `namespace`; returns how many data were sent.

    Raises:
        TransientError: CloudWatch could not be reached or refused the call; the caller decides
            whether that matters (Relay only warns: metrics never fail a deployment).
    """
    for start in range(0, len(data), _PUT_CHUNK):
        chunk = [dict(d) for d in data[start : start + _PUT_CHUNK]]
        _call(
            client.put_metric_data,
            f"publishing metrics to {namespace!r}",
            Namespace=namespace,
            MetricData=chunk,
        )
    return len(data)


def alarm_states(client: Any, names: Sequence[str], where: str = "relay.yaml") -> dict[str, str]:
    """The state (OK, ALARM, INSUFFICIENT_DATA) of each named metric or composite alarm.

    Args:
        names: Alarm names, as written in the manifest.
        where: Where the names come from, for the error message
            (e.g. "relay.yaml: environments.prod.analysis.cloudwatch_alarms").

    Raises:
        TerminalError: One or more names do not exist; every missing one is named.
        TransientError: CloudWatch could not be reached.
    """
    wanted = list(dict.fromkeys(names))
    states: dict[str, str] = {}
    for start in range(0, len(wanted), _DESCRIBE_CHUNK):
        chunk = wanted[start : start + _DESCRIBE_CHUNK]
        pages = _call(
            client.get_paginator("describe_alarms")
            .paginate(AlarmNames=chunk, AlarmTypes=["MetricAlarm", "CompositeAlarm"])
            .build_full_result,
            "reading CloudWatch alarms",
        )
        for alarm in [*pages.get("MetricAlarms", []), *pages.get("CompositeAlarms", [])]:
            states[alarm["AlarmName"]] = alarm["StateValue"]
    missing = [name for name in wanted if name not in states]
    if missing:
        raise TerminalError(
            MISSING_ALARM.format(
                names=", ".join(repr(n) for n in missing),
                region=client.meta.region_name,
                where=where,
            )
        )
    return {name: states[name] for name in wanted}


def alarms_in_alarm(client: Any, names: Sequence[str], where: str = "relay.yaml") -> list[str]:
    """The named alarms that are in ALARM now, in the order given (see `alarm_states`)."""
    return [name for name, state in alarm_states(client, names, where).items() if state == ALARM]


def _call(method: Any, doing: str, **kwargs: Any) -> Any:
    return call(method, doing, **kwargs)


VERSIONS = ("canary", "stable")


def version_traffic(
    client: Any,
    metrics: CloudWatchMetrics,
    service: str,
    environment: str,
    start: datetime,
    end: datetime,
) -> dict[str, ServerCounters | None]:
    """Each version's traffic between `start` and `end` (one GetMetricData call): requests and
    errors summed, the response time averaged; None for a version whose requests metric has
    no data in the window."""
    period = _period((end - start).total_seconds())
    queries = []
    for version in VERSIONS:
        filled = {"service": service, "environment": environment, "version": version}
        dimensions = [
            {"Name": name, "Value": fill_placeholders(value, filled)}
            for name, value in metrics.dimensions.items()
        ]
        asked = [("requests", metrics.requests, "Sum"), ("errors", metrics.errors, "Sum")]
        if metrics.response_time is not None:
            asked.append(("time", metrics.response_time, "Average"))
        queries += [
            {
                "Id": f"{version}_{what}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": metrics.namespace,
                        "MetricName": name,
                        "Dimensions": dimensions,
                    },
                    "Period": period,
                    "Stat": stat,
                },
            }
            for what, name, stat in asked
        ]
    answer = _call(
        client.get_metric_data,
        f"reading {metrics.namespace} metrics of {service} in {environment}",
        MetricDataQueries=queries,
        StartTime=start,
        EndTime=end,
    )
    values = {r["Id"]: list(r.get("Values", [])) for r in answer.get("MetricDataResults", [])}
    scale = 1000.0 if metrics.response_time_unit == "seconds" else 1.0
    found: dict[str, ServerCounters | None] = {}
    for version in VERSIONS:
        requests = values.get(f"{version}_requests", [])
        if not requests:
            found[version] = None
            continue
        count = int(sum(requests))
        times = values.get(f"{version}_time", [])
        mean_ms = sum(times) / len(times) * scale if times else 0.0
        found[version] = ServerCounters(
            requests=count,
            errors=int(sum(values.get(f"{version}_errors", []))),
            response_ms_total=mean_ms * count,
        )
    return found


def _period(seconds: float) -> int:
    """The shortest period GetMetricData accepts that covers `seconds`: 1, 5, 10 or 30 (of
    high-resolution metrics), else a multiple of 60. Standard metrics (an ALB's) have one
    point a minute: canary windows judged by them need `interval_seconds` of 60 or more."""
    for period in (1, 5, 10, 30):
        if seconds <= period:
            return period
    return 60 * math.ceil(seconds / 60)
