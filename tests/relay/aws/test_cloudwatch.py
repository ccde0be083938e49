"""relay.aws.cloudwatch: metrics and alarms against the stack's moto server over HTTP;
relay.analysis.with_alarms, the canary's alarm provider (pure). One attempt's delivery metrics
are computed in relay.dora (tests/relay/test_dora.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from relay.analysis import Judgement, Verdict, with_alarms
from relay.aws.cloudwatch import alarm_states, alarms_in_alarm, put_metrics
from relay.dora import attempt_metrics
from relay.errors import TerminalError
from relay.ledger import Outcome, Record

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IMAGE = "127.0.0.1:5000/shop/orders@sha256:" + "a" * 64
S, R = Outcome.SUCCEEDED, Outcome.ROLLED_BACK


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


@pytest.mark.parametrize(
    ("verdict", "reasons", "states", "expected_verdict", "expected_reasons"),
    [
        (Verdict.SUCCESSFUL, [], {"a": "OK", "b": "INSUFFICIENT_DATA"}, Verdict.SUCCESSFUL, []),
        (
            Verdict.SUCCESSFUL,
            [],
            {"a": "ALARM"},
            Verdict.FAILED,
            ["CloudWatch alarm 'a' is in ALARM"],
        ),
        (
            Verdict.INCONCLUSIVE,
            ["too few"],
            {"a": "ALARM"},
            Verdict.FAILED,
            ["CloudWatch alarm 'a' is in ALARM"],
        ),
        (
            Verdict.FAILED,
            ["error rate"],
            {"a": "OK", "b": "ALARM"},
            Verdict.FAILED,
            ["CloudWatch alarm 'b' is in ALARM", "error rate"],
        ),
        (Verdict.INCONCLUSIVE, ["too few"], {}, Verdict.INCONCLUSIVE, ["too few"]),
    ],
)
def test_alarms_can_only_make_a_verdict_worse(
    verdict: Verdict,
    reasons: list[str],
    states: dict[str, str],
    expected_verdict: Verdict,
    expected_reasons: list[str],
) -> None:
    judged = with_alarms(Judgement(verdict, 30, 0.0, 12.0, reasons), states)
    assert (judged.verdict, judged.reasons) == (expected_verdict, expected_reasons)
    assert judged.requests == 30


# --- against moto over HTTP --------------------------------------------------------------------


@pytest.fixture
def cloudwatch() -> Any:
    return boto3.client("cloudwatch")


@pytest.fixture
def alarms(cloudwatch: Any) -> Iterator[list[str]]:
    names = [f"relay-test-{uuid.uuid4().hex[:8]}-{n}" for n in ("ok", "firing")]
    for name in names:
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="RelayTest",
            MetricName="Errors",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanThreshold",
        )
    cloudwatch.set_alarm_state(AlarmName=names[0], StateValue="OK", StateReason="test")
    cloudwatch.set_alarm_state(AlarmName=names[1], StateValue="ALARM", StateReason="test")
    yield names
    cloudwatch.delete_alarms(AlarmNames=names)


@pytest.mark.stack
def test_alarm_states_follow_set_alarm_state(cloudwatch: Any, alarms: list[str]) -> None:
    ok, firing = alarms
    assert alarm_states(cloudwatch, [firing, ok]) == {firing: "ALARM", ok: "OK"}
    assert alarms_in_alarm(cloudwatch, alarms) == [firing]
    cloudwatch.set_alarm_state(AlarmName=firing, StateValue="OK", StateReason="recovered")
    assert alarms_in_alarm(cloudwatch, alarms) == []


@pytest.mark.stack
def test_an_alarm_that_does_not_exist_is_named_with_the_fix(
    cloudwatch: Any, alarms: list[str]
) -> None:
    where = "relay.yaml: environments.prod.analysis.cloudwatch_alarms"
    with pytest.raises(TerminalError) as error:
        alarms_in_alarm(cloudwatch, [alarms[0], "no-such-alarm-x", "no-such-alarm-y"], where)
    message = str(error.value)
    assert "'no-such-alarm-x', 'no-such-alarm-y' does not exist" in message
    assert alarms[0] not in message
    assert "create it" in message and where in message


@pytest.mark.stack
def test_put_metrics_with_service_and_environment_dimensions(cloudwatch: Any) -> None:
    namespace = f"RelayTest/{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    failed = record(1, R, 0).model_copy(update={"started_at": now, "ended_at": now})
    restored = failed.model_copy(
        update={"id": 2, "outcome": S, "ended_at": now + timedelta(seconds=90)}
    )
    sent = put_metrics(cloudwatch, namespace, attempt_metrics(failed, [], None))
    sent += put_metrics(cloudwatch, namespace, attempt_metrics(restored, [failed], now))
    assert sent == 3 + 5

    dimensions = [
        {"Name": "App", "Value": "shop"},
        {"Name": "Service", "Value": "orders"},
        {"Name": "Environment", "Value": "prod"},
    ]
    listed = cloudwatch.list_metrics(Namespace=namespace, Dimensions=dimensions)["Metrics"]
    assert {m["MetricName"] for m in listed} == {
        "Deployments",
        "Failures",
        "LeadTimeSeconds",
        "TimeToRestoreSeconds",
    }

    def stat(name: str, statistic: str, dims: list[dict[str, str]] = dimensions) -> float:
        answer = cloudwatch.get_metric_statistics(
            Namespace=namespace,
            MetricName=name,
            Dimensions=dims,
            StartTime=now - timedelta(minutes=5),
            EndTime=now + timedelta(minutes=5),
            Period=600,
            Statistics=[statistic],
        )
        return float(sum(p[statistic] for p in answer["Datapoints"]))

    assert stat("Failures", "Sum") == 1
    assert stat("TimeToRestoreSeconds", "Maximum") == 90
    assert stat("LeadTimeSeconds", "Maximum") == 90
    # CloudWatch keys a metric by its exact dimensions (moto matches a subset, so the total
    # without Outcome is not summed here: on moto it would include the split as well)
    for outcome in ("rolled_back", "succeeded"):
        split = [*dimensions, {"Name": "Outcome", "Value": outcome}]
        assert stat("Deployments", "Sum", split) == 1
    kinds = {
        tuple(d["Name"] for d in m["Dimensions"])
        for m in listed
        if m["MetricName"] == "Deployments"
    }
    assert kinds == {
        ("App", "Service", "Environment"),
        ("App", "Service", "Environment", "Outcome"),
    }


@pytest.mark.parametrize(
    ("seconds", "period"), [(0.5, 1), (3, 5), (9.2, 10), (11, 30), (30, 30), (31, 60), (61, 120)]
)
def test_a_window_is_read_with_a_period_getmetricdata_accepts(seconds: float, period: int) -> None:
    from relay.aws.cloudwatch import _period

    assert _period(seconds) == period
