"""Delivery metrics: the DORA measures of an application from the ledger, as a table artifact
in the Prefect UI and aggregates in CloudWatch (`relay metrics --publish`, or a schedule)."""

from __future__ import annotations

from prefect import flow

from flows.client import one_client_for_tasks
from relay.dora import DeliveryMetrics
from tasks.dora import report_delivery_metrics


@flow(name="delivery-metrics", flow_run_name="delivery-metrics-{app}")
async def delivery_metrics(
    app: str, environment: str | None = None, days: int = 30, namespace: str | None = "Relay"
) -> list[DeliveryMetrics]:
    """Deployment frequency, lead time, change failure rate and time to restore of `app`."""
    with one_client_for_tasks():  # the tasks share one client (flows/client.py)
        return report_delivery_metrics(app, environment, days, namespace)
