"""Analysis stage: judge a canary step by its traffic beside the stable version's in the same
window, and by the environment's CloudWatch alarms (read by `tasks.metrics.read_alarm_states`);
keep the window in the ledger, so the verdict can be explained and replayed later."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from relay.analysis import (
    Judgement,
    ServerCounters,
    Traffic,
    Verdict,
    judge,
    with_alarms,
    with_checks,
)
from relay.errors import RelayError
from relay.ledger import Ledger
from relay.manifest import Analysis
from relay.platforms import Spec
from relay.prometheus import shown
from relay.replay import Counters, Window, window_rows
from relay.settings import relay_database


@task(name="analyze-canary", task_run_name="analyze-{weight}%", cache_policy=NO_CACHE)
def analyze_canary(
    spec: Spec,
    weight: int,
    step: tuple[int, int],
    traffic: Traffic,
    started_at: datetime,
    analysis: Analysis,
    runs: tuple[str, str | None],
    artifact_key: str,
    alarm_states: dict[str, str] | None = None,
) -> Judgement:
    """Judge one step (`step`: its number and how many the plan has) by both versions' traffic
    in its window, and record the window under `runs` (the canary's run id and its
    deployment's). No canary traffic at all (a metric with no data, a source that could not be
    asked) is inconclusive, saying so and why."""
    canary, stable = traffic.canary, traffic.stable
    if canary is None:
        judgement = Judgement(Verdict.INCONCLUSIVE, 0, 0.0, 0.0, [traffic.missing()], stable)
        canary = ServerCounters()
    else:
        judgement = judge(canary, analysis, stable)
    judgement = with_checks(with_alarms(judgement, alarm_states or {}), traffic.checks)
    recorded = Window(
        app=spec.app,
        environment=spec.environment,
        service=spec.service,
        image=str(spec.image),
        run_id=runs[0],
        deploy_run_id=runs[1],
        step=step[0],
        steps=step[1],
        weight=weight,
        started_at=started_at,
        ended_at=datetime.now(UTC),
        canary=Counters.of(canary),
        stable=Counters.of(stable) if stable is not None else None,
        limits=_recordable(analysis),
        alarms=alarm_states or {},
        checks=traffic.checks,
        verdict=judgement.verdict,
        reasons=judgement.reasons,
    )
    try:
        Ledger(relay_database()).add_window(recorded)
    except RelayError as exc:  # the verdict stands; only its record for replays is missing
        get_run_logger().warning("%s: the analysis window was not recorded: %s", spec.service, exc)
    create_table_artifact(
        key=artifact_key,
        table=window_rows([recorded]),
        description=f"Canary analysis of {spec.service} at {weight}% (step {step[0]} of "
        f"{step[1]}): the canary beside the stable version in the same window",
    )
    get_run_logger().info(
        "%s canary at %s%%: %s (%s)",
        spec.service,
        weight,
        judgement.verdict.value,
        "; ".join(judgement.reasons) or "within limits",
    )
    return judgement


@task(name="watch-new-version", cache_policy=NO_CACHE)
def judge_watch(
    spec: Spec,
    seconds: float,
    traffic: Traffic,
    analysis: Analysis,
    alarm_states: dict[str, str] | None = None,
) -> Judgement:
    """The new version after the switch, over the watch window: by the absolute limits, the
    alarms and the environment's own checks (the previous version has no traffic left to
    compare with). Too few requests, or no data, says nothing and does not fail it; a source
    that could not be read says why (the caller decides)."""
    absolute = analysis.model_copy(
        update={"max_error_rate_increase": None, "max_response_ratio": None}
    )
    if traffic.canary is None and traffic.unavailable:
        judgement = Judgement(Verdict.INCONCLUSIVE, 0, 0.0, 0.0, [traffic.unavailable])
    else:
        judgement = judge(traffic.canary or ServerCounters(), absolute)
    judgement = with_checks(with_alarms(judgement, alarm_states or {}), traffic.checks)
    get_run_logger().info(
        "%s watched for %s s with all traffic: %s (%s)",
        spec.service,
        seconds,
        judgement.verdict.value,
        "; ".join(judgement.reasons) or "within limits",
    )
    return judgement


def _recordable(analysis: Analysis) -> Analysis:
    """The limits as the ledger keeps them: a Prometheus address without its credentials."""
    prometheus = analysis.prometheus
    if prometheus is None or prometheus.address is None:
        return analysis
    address = shown(prometheus.address)
    return analysis.model_copy(
        update={"prometheus": prometheus.model_copy(update={"address": address})}
    )
