"""Analysis stage: judge a canary by its own HAProxy counters over one step's window, and by
the environment's CloudWatch alarms (read by `tasks.metrics.read_alarm_states`)."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from relay.analysis import Judgement, ServerCounters, judge, window, with_alarms
from relay.manifest import Analysis


@task(name="analyze-canary", cache_policy=NO_CACHE)
def analyze_canary(
    service: str,
    weight: int,
    before: ServerCounters,
    after: ServerCounters,
    analysis: Analysis,
    artifact_key: str,
    alarm_states: dict[str, str] | None = None,
) -> Judgement:
    judgement = with_alarms(judge(window(before, after), analysis), alarm_states or {})
    create_table_artifact(
        key=artifact_key,
        table=[
            {
                "canary weight": f"{weight}%",
                "requests": judgement.requests,
                "error rate": f"{judgement.error_rate:.1%}",
                "mean response ms": round(judgement.mean_response_ms, 1),
                "alarms": ", ".join(f"{n}: {s}" for n, s in (alarm_states or {}).items()),
                "verdict": str(judgement.verdict.value),
                "reasons": "; ".join(judgement.reasons),
            }
        ],
        description=f"Canary analysis of {service} at {weight}%",
    )
    get_run_logger().info(
        "%s canary at %s%%: %s (%s)",
        service,
        weight,
        judgement.verdict.value,
        "; ".join(judgement.reasons) or "within limits",
    )
    return judgement
