"""Metrics stage: delivery metrics out to CloudWatch after every ledger record, alarm states in
for canary steps and production approvals, and the versions' request metrics in for canary
steps judged by CloudWatch or Prometheus (`relay.aws.cloudwatch` and `relay.prometheus` do the
work)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from blocks.aws import aws_client
from relay.analysis import ServerCounters, Traffic
from relay.aws.cloudwatch import alarm_states, put_metrics, version_traffic
from relay.dora import attempt_metrics
from relay.ledger import Ledger, Record
from relay.manifest import CloudWatch, CloudWatchMetrics, PrometheusMetrics
from relay.prometheus import run_checks, shown
from relay.prometheus import version_traffic as prometheus_traffic
from relay.settings import relay_database
from tasks.support.retry import on_transient

# Enough earlier attempts to find the start of any realistic run of failures.
HISTORY_LIMIT = 200


@task(name="publish-delivery-metrics", cache_policy=NO_CACHE)
def publish_delivery_metrics(
    record: Record, settings: CloudWatch, commit_time: datetime | None
) -> int:
    """Publish one attempt's delivery metrics; returns how many data were sent.

    Never raises: the deployment already happened (or did not) and is in the ledger, which is
    the truth; a metric that could not be sent is a warning, not a reason to fail a release.
    """
    logger = get_run_logger()
    if not settings.metrics:
        return 0
    try:
        history = Ledger(relay_database()).history(
            record.app, record.service, record.environment, limit=HISTORY_LIMIT
        )
        data = attempt_metrics(record, history, commit_time)
        put_metrics(aws_client("cloudwatch"), settings.namespace, data)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.warning(
            "delivery metrics of %s in %s were not published to CloudWatch (%s): %s",
            record.service,
            record.environment,
            settings.namespace,
            exc,
        )
        return 0
    logger.info(
        "CloudWatch %s: %s for %s in %s",
        settings.namespace,
        ", ".join(sorted({d["MetricName"] for d in data})),
        record.service,
        record.environment,
    )
    return len(data)


@task(
    name="read-alarm-states",
    cache_policy=NO_CACHE,
    **on_transient(2, 2),
)
def read_alarm_states(names: list[str], where: str) -> dict[str, str]:
    """The state of each named CloudWatch alarm; `where` names the manifest field for errors
    (an alarm that does not exist is a TerminalError: a typo must not switch a check off)."""
    states = alarm_states(aws_client("cloudwatch"), names, where)
    get_run_logger().info(
        "CloudWatch alarms: %s", ", ".join(f"{name} {state}" for name, state in states.items())
    )
    return states


@task(name="read-cloudwatch-traffic", cache_policy=NO_CACHE, **on_transient(2, 2))
def read_version_traffic(
    metrics: CloudWatchMetrics, service: str, environment: str, start: datetime, end: datetime
) -> dict[str, ServerCounters | None]:
    """The canary's and the stable version's requests over one window, from CloudWatch."""
    found = version_traffic(aws_client("cloudwatch"), metrics, service, environment, start, end)
    get_run_logger().info(
        "CloudWatch %s: %s",
        metrics.namespace,
        ", ".join(
            f"{v} {c.requests} requests, {c.errors} errors" if c else f"{v} no data"
            for v, c in found.items()
        ),
    )
    return found


@task(name="read-prometheus-traffic", cache_policy=NO_CACHE, **on_transient(2, 2))
def read_prometheus_traffic(
    metrics: PrometheusMetrics, address: str, values: Mapping[str, str], end: datetime
) -> Traffic:
    """The canary's and the stable version's requests over one window, and the environment's
    own checks, from Prometheus' answers to the window's PromQL queries."""
    with httpx.Client() as client:
        found = prometheus_traffic(client, address, metrics, values, end)
        checks = run_checks(client, address, metrics, values, end)
    get_run_logger().info(
        "Prometheus %s: %s%s",
        shown(address),
        ", ".join(
            f"{v} {c.requests} requests, {c.errors} errors" if c else f"{v} no data"
            for v, c in found.items()
        ),
        "".join(f"; check {c.name} = {c.value}" for c in checks),
    )
    return Traffic(f"Prometheus ({shown(address)})", found["canary"], found["stable"], "", checks)
