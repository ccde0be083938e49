"""CloudWatch in the pipeline, on the real stack (moto over HTTP): an alarm in ALARM fails a
canary step and rolls it back, the run's log lines are searchable in CloudWatch Logs, delivery
metrics exist per service and environment, and an alarm blocks a production approval."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from deployments.approvals import waiting_runs
from flows.promote import promote
from flows.release import release
from flows.service_pipeline import service_pipeline
from relay.errors import NotApproved, RolledBack
from relay.ledger import Ledger, Outcome
from relay.settings import relay_database
from tests.flows.shop import Shop, shop_repository

pytestmark = pytest.mark.stack

OFFSETS = {"dev": 11000, "staging": 11500, "prod": 13000}
SERVICE = "inventory"
PORT = 8003
NAMESPACE = "Relay"


@pytest.fixture(scope="module")
def cloudwatch() -> Any:
    return boto3.client("cloudwatch")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, cloudwatch: Any) -> Iterator[Shop]:
    with shop_repository(tmp_path_factory, "cwatch", OFFSETS, services=(SERVICE,)) as shop:
        alarms = [canary_alarm(shop), block_alarm(shop)]
        for name in alarms:
            cloudwatch.put_metric_alarm(
                AlarmName=name,
                Namespace="ShopTest",
                MetricName="Errors",
                Statistic="Sum",
                Period=60,
                EvaluationPeriods=1,
                Threshold=1,
                ComparisonOperator="GreaterThanThreshold",
            )
            cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="test start")

        def configure(manifest: dict[str, Any]) -> None:
            # Tests after a deploy are not what this module is about: quick ones, no e2e.
            manifest.pop("e2e_tests", None)
            for service in manifest["services"].values():
                service["integration_tests"] = ["python", "-c", "pass"]  # in its stage image
            dev = manifest["environments"]["dev"]
            dev["strategy"] = "canary"
            dev["canary_steps"] = [50, 100]
            dev["analysis"] = {
                "interval_seconds": 1,
                "min_requests": 1,
                "on_inconclusive": "continue",  # no traffic here: only the alarm can fail it
                "cloudwatch_alarms": [canary_alarm(shop)],
            }
            manifest["environments"]["prod"]["approval"] = {
                "required": True,
                "timeout_seconds": 30,
                "block_on_alarms": [block_alarm(shop)],
            }

        shop.edit_manifest(configure)
        try:
            yield shop
        finally:
            cloudwatch.delete_alarms(AlarmNames=alarms)


def canary_alarm(shop: Shop) -> str:
    return f"{shop.app}-dev-errors"


def block_alarm(shop: Shop) -> str:
    return f"{shop.app}-prod-incident"


@pytest.fixture(scope="module")
def v1(shop: Shop) -> str:
    commit = shop.commit("Initial shop")
    asyncio.run(release(str(shop.repo), commit))  # a release, so that it can be promoted
    return commit


@pytest.fixture(scope="module")
def rejected_canary(shop: Shop, v1: str, cloudwatch: Any) -> dict[str, Any]:
    """v2 of inventory deployed to dev while the canary's alarm is in ALARM."""
    shop.edit(f"services/{SERVICE}/app.py", '"""', '"""Inventory v2.\n')
    v2 = shop.commit("Inventory v2")
    cloudwatch.set_alarm_state(
        AlarmName=canary_alarm(shop), StateValue="ALARM", StateReason="errors upstream"
    )
    try:
        state = asyncio.run(service_pipeline(str(shop.repo), v2, SERVICE, "dev", return_state=True))
    finally:
        cloudwatch.set_alarm_state(
            AlarmName=canary_alarm(shop), StateValue="OK", StateReason="recovered"
        )
    return {"commit": v2, "state": state}


def version(environment: str) -> str:
    url = f"http://127.0.0.1:{PORT + OFFSETS[environment]}/version"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(json.load(response)["version"])


def dimensions(shop: Shop, environment: str) -> list[dict[str, str]]:
    return [
        {"Name": "App", "Value": shop.app},
        {"Name": "Service", "Value": SERVICE},
        {"Name": "Environment", "Value": environment},
    ]


def test_an_alarm_in_alarm_fails_the_canary_step_and_rolls_back(
    shop: Shop, v1: str, rejected_canary: dict[str, Any]
) -> None:
    state = rejected_canary["state"]
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, RolledBack)
    assert f"CloudWatch alarm '{canary_alarm(shop)}' is in ALARM" in str(error)
    assert "at 50%" in str(error)
    assert version("dev") == v1, "the previous version still serves"
    latest = Ledger(relay_database()).history(shop.app, SERVICE, "dev", limit=1)[0]
    assert latest.outcome == Outcome.ROLLED_BACK
    assert latest.commit == rejected_canary["commit"]
    assert canary_alarm(shop) in latest.reason


def test_the_runs_log_lines_are_in_cloudwatch_logs(
    shop: Shop, rejected_canary: dict[str, Any]
) -> None:
    run_id = rejected_canary["state"].state_details.flow_run_id
    stream = f"{SERVICE}-dev/{run_id}"
    logs = boto3.client("logs")
    events = logs.filter_log_events(logGroupName=f"/relay/{SERVICE}", logStreamNames=[stream])[
        "events"
    ]
    messages = [e["message"] for e in events]
    assert any("[checkout-commit" in m for m in messages), "the pipeline's task runs' lines"
    assert any(f"{canary_alarm(shop)} ALARM" in m for m in messages), "the canary subflow's lines"
    assert any(m.startswith(f"ERROR [{SERVICE}-dev] Encountered exception") for m in messages), (
        "the run's own last lines, logged just before it failed"
    )
    found = logs.filter_log_events(
        logGroupName=f"/relay/{SERVICE}", filterPattern=f'"{canary_alarm(shop)}"'
    )["events"]
    assert stream in {e["logStreamName"] for e in found}
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)


def test_delivery_metrics_exist_for_the_service_and_environment(
    shop: Shop, cloudwatch: Any, rejected_canary: dict[str, Any]
) -> None:
    dev = dimensions(shop, "dev")
    listed = cloudwatch.list_metrics(Namespace=NAMESPACE, Dimensions=dev)["Metrics"]
    assert {"Deployments", "Failures", "LeadTimeSeconds"} <= {m["MetricName"] for m in listed}

    def total(name: str, dims: list[dict[str, str]], statistic: str = "Sum") -> float:
        now = datetime.now(UTC)
        answer = cloudwatch.get_metric_statistics(
            Namespace=NAMESPACE,
            MetricName=name,
            Dimensions=dims,
            StartTime=now - timedelta(hours=1),
            EndTime=now + timedelta(minutes=5),
            Period=3600,
            Statistics=[statistic],
        )
        return float(sum(p[statistic] for p in answer["Datapoints"]))

    assert total("Failures", dev) == 1, "v1 succeeded, v2 was rolled back"
    for outcome in ("succeeded", "rolled_back"):
        assert total("Deployments", [*dev, {"Name": "Outcome", "Value": outcome}]) == 1
    assert 0 < total("LeadTimeSeconds", dev, "Maximum") < 3600


def test_an_alarm_blocks_production_before_the_approval_is_asked(
    shop: Shop, v1: str, cloudwatch: Any, rejected_canary: dict[str, Any]
) -> None:
    asyncio.run(promote(str(shop.repo), v1, "staging", services=[SERVICE]))
    assert version("staging") == v1
    cloudwatch.set_alarm_state(
        AlarmName=block_alarm(shop), StateValue="ALARM", StateReason="incident in prod"
    )
    known = {r.id for r in waiting_runs()}
    started = time.monotonic()
    try:
        with pytest.raises(NotApproved) as refused:
            asyncio.run(promote(str(shop.repo), v1, "prod", services=[SERVICE]))
    finally:
        cloudwatch.set_alarm_state(AlarmName=block_alarm(shop), StateValue="OK", StateReason="ok")
    assert f"CloudWatch alarm '{block_alarm(shop)}' is in ALARM" in str(refused.value)
    assert "no approval was asked" in str(refused.value)
    assert time.monotonic() - started < 30, "it did not wait for the approval's timeout"
    forms = {r.id for r in waiting_runs() if r.name == f"approve-{shop.app}-prod"}
    assert forms <= known, "no approval form was shown"
    ledger = Ledger(relay_database())
    [record] = ledger.history(shop.app, SERVICE, "prod")
    assert record.outcome == Outcome.REJECTED and block_alarm(shop) in record.reason
    assert ledger.current(shop.app, "prod", SERVICE) is None
    with pytest.raises(OSError):
        version("prod")  # nothing was deployed
