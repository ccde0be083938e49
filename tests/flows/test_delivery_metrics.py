"""`relay metrics` and the delivery-metrics flow on the stack: DORA measures from the real
ledger, a table artifact on the Prefect server, aggregates in CloudWatch (moto)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from deployments.cli import main
from flows.delivery_metrics import delivery_metrics
from relay.ledger import Ledger, Outcome, Record
from relay.settings import relay_database

pytestmark = pytest.mark.stack


def test_metrics_from_the_ledger_to_the_table_prefect_and_cloudwatch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = f"dora-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    ledger = Ledger(relay_database())
    for hours_ago, outcome in [
        (30, Outcome.SUCCEEDED),
        (20, Outcome.FAILED),
        (18, Outcome.SUCCEEDED),
    ]:
        ended = now - timedelta(hours=hours_ago)
        ledger.append(
            Record(
                app=app,
                service="payments",
                environment="prod",
                image=f"127.0.0.1:5000/{app}/payments@sha256:{'b' * 64}",
                commit="c" * 40,
                tree="t" * 40,
                strategy="canary",
                outcome=outcome,
                started_at=ended - timedelta(minutes=1),
                ended_at=ended,
                committed_at=ended - timedelta(hours=1),
            )
        )

    assert main(["metrics", "--app", app, "--days", "7"]) == 0
    table = capsys.readouterr().out
    assert "prod" in table and "payments" in table and "33%" in table and "60 min" in table
    assert "2.0 h" in table  # restored 2 h after the failure

    namespace = f"RelayTest{uuid.uuid4().hex[:6]}"
    [m] = asyncio.run(delivery_metrics(app, None, 7, namespace))
    assert m.deployments == 2 and m.failures == 1
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{app}-delivery-metrics"]))
        )
    assert artifacts and "payments" in str(artifacts[0].data)
    names = {
        metric["MetricName"]
        for metric in boto3.client("cloudwatch").list_metrics(Namespace=namespace)["Metrics"]
    }
    assert names == {
        "DeploymentsPerDay",
        "ChangeFailureRate",
        "LeadTimeMedianSeconds",
        "TimeToRestoreMedianSeconds",
    }
