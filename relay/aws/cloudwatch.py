"""Amazon CloudWatch: delivery metrics out, alarm states in.

Relay publishes what it knows about deliveries as custom metrics, so a team graphs and alarms on
them next to its services' own metrics, and reads alarms that the team owns, so a canary step or
a production approval stops while one of them is in ALARM.

* `put_metrics` sends metric data (`relay.dora` computes them from the ledger, by the same
  rules as `relay metrics`) with `PutMetricData`, in chunks the API accepts.
* `alarm_states` / `alarms_in_alarm` read alarms by name with `DescribeAlarms`; a name that does
  not exist is a configuration error (a typo must not silently disable a safety check).

Every function takes a boto3 CloudWatch client made by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict

from relay.aws.errors import call
from relay.errors import TerminalError

__all__ = [
    "ALARM",
    "Dimension",
    "MetricDatum",
    "alarm_states",
    "alarms_in_alarm",
    "put_metrics",
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
