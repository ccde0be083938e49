"""Delivery metrics stage: DORA measures from the ledger (`relay.dora`) as a table artifact
and as CloudWatch aggregates."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from blocks.aws import aws_client
from relay.aws.cloudwatch import put_metrics
from relay.dora import DeliveryMetrics, delivery_metrics, metric_data, table_rows
from relay.ledger import Ledger
from relay.settings import relay_database
from tasks.record import artifact_key

# Every record of an app in any realistic window (the ledger keeps them all).
RECORDS_LIMIT = 100_000


def read_delivery_metrics(app: str, environment: str | None, days: int) -> list[DeliveryMetrics]:
    """The DORA measures of `app` (one environment, if given) over the last `days` days."""
    records = Ledger(relay_database()).history(app, environment=environment, limit=RECORDS_LIMIT)
    return delivery_metrics(records, datetime.now(UTC), days)


@task(name="report-delivery-metrics", cache_policy=NO_CACHE)
def report_delivery_metrics(
    app: str, environment: str | None, days: int, namespace: str | None
) -> list[DeliveryMetrics]:
    """A table artifact (`<app>-delivery-metrics`) and, with a `namespace`, the aggregates in
    CloudWatch. Publishing is best effort: the table is the answer, a metric not sent a warning."""
    logger = get_run_logger()
    metrics = read_delivery_metrics(app, environment, days)
    create_table_artifact(
        key=artifact_key(app, "delivery-metrics"),
        table=table_rows(metrics) or [{"environment": "-", "service": "no deployments"}],
        description=f"DORA metrics of {app} over the last {days} days, from the ledger",
    )
    if namespace and metrics:
        try:
            sent = put_metrics(
                aws_client("cloudwatch"), namespace, metric_data(metrics, datetime.now(UTC))
            )
            logger.info("CloudWatch %s: %s delivery aggregates of %s", namespace, sent, app)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            logger.warning("delivery aggregates not published to CloudWatch %s: %s", namespace, exc)
    return metrics
