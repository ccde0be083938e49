"""Running a strategy's plan: every step a task, and the stable version back on any failure.

Each strategy flow asks `relay.strategies` for its plan (a flat list of steps) and hands it to
`execute_plan`, which runs every step as a task. The one rule that spans all of them lives
here: until traffic has been switched for good, any failure puts the stable version back.

The steps' tasks are synchronous (Docker, HAProxy's socket, HTTP checks) and run one after
the other, so the flow simply calls them; only waiting (pauses, a person's decision) is awaited.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect_docker import DockerHost

from flows.approval import approval
from relay.analysis import (
    Readings,
    Traffic,
    Verdict,
    judge_alarms,
    next_step,
    recent_window,
    window,
)
from relay.errors import NotApproved, RelayError, RolledBack, StageFailed, WatchFailed
from relay.manifest import Environment
from relay.platforms import AnyRollout, DeployResult, Spec
from relay.platforms.docker import Rollout, health_ok
from relay.platforms.kubernetes import KubeSpec
from relay.prometheus import placeholders
from relay.settings import prometheus_url
from relay.stages.site import StageSite
from relay.strategies.steps import (
    Analyze,
    Pause,
    SetWeight,
    SmokeTest,
    StartNew,
    StepPlan,
    StopPrevious,
    SwitchActive,
    Watch,
)
from tasks.analysis import analyze_canary, judge_watch
from tasks.deploy import (
    abort_rollout,
    keep_previous_version,
    read_slot_counters,
    set_canary_weight,
    start_new_version,
    stop_previous_version,
    switch_traffic,
)
from tasks.metrics import read_alarm_states, read_prometheus_traffic, read_version_traffic
from tasks.record import artifact_key
from tasks.support.cancellation import raise_if_cancelled
from tasks.test import run_smoke_tests, run_smoke_tests_in_cluster

# How often a pause looks for a cancellation.
CANCEL_CHECK_SECONDS = 1.0
# How long an inconclusive canary waits for a person while traffic stays split.
INCONCLUSIVE_WAIT_SECONDS = 900


class _Run:
    """The state of one plan's execution: the rollout, and the counters of the current step."""

    def __init__(
        self, docker_host: DockerHost, spec: Spec, env: Environment, analyses: int
    ) -> None:
        self.docker_host = docker_host
        self.spec = spec
        self.env = env
        self.rollout: AnyRollout | None = None
        self.switched = False
        self.weight = 0
        # The current canary step: its number (of `analyses`), and both versions' counters and
        # the time when its window opened. Each step starts afresh: nothing carries over.
        self.analyses = analyses
        self.step = 0
        self.opened: Readings | None = None
        self.opened_at = datetime.now(UTC)

    @property
    def started(self) -> AnyRollout:
        if self.rollout is None:
            raise RuntimeError("plan error: a step needs the new version, but StartNew has not run")
        return self.rollout


async def execute_plan(
    plan: StepPlan,
    docker_host: DockerHost,
    spec: Spec,
    env: Environment,
    smoke: StageSite | None,
) -> DeployResult:
    run = _Run(docker_host, spec, env, sum(isinstance(s, Analyze) for s in plan.steps))
    logger = get_run_logger()
    logger.info("%s plan for %s: %s", plan.strategy, spec.service, "; ".join(plan.describe()))
    try:
        for step in plan.steps:
            raise_if_cancelled()
            await _execute(step, run, smoke)
    except BaseException as exc:  # a cancellation or Ctrl-C too: never leave a canary serving
        if run.rollout is not None and not run.switched:
            abort_rollout(docker_host, run.rollout)
            if isinstance(exc, Exception):
                raise RolledBack(f"{spec.service}: {exc}; the previous version serves") from exc
        raise
    return run.started.result()


async def _execute(step: object, run: _Run, smoke: StageSite | None) -> None:
    match step:
        case StartNew():
            run.rollout = start_new_version(run.docker_host, run.spec)
        case SmokeTest():
            if run.env.smoke_tests and isinstance(run.spec, KubeSpec):
                run_smoke_tests_in_cluster(
                    run.spec, list(run.env.smoke_tests), run.started.slot_url
                )
            elif run.env.smoke_tests and smoke is not None:
                run_smoke_tests(
                    run.docker_host,
                    run.spec.service,
                    smoke,
                    list(run.env.smoke_tests),
                    run.started.slot_url,
                )
        case SetWeight(weight=weight):
            set_canary_weight(run.docker_host, run.started, weight)
            run.weight, run.step = weight, run.step + 1
            run.opened, run.opened_at = read_slot_counters(run.started), datetime.now(UTC)
        case Pause(seconds=seconds):
            await _pause(seconds)
        case Analyze():
            await _analyze(run)
        case SwitchActive():
            switch_traffic(run.docker_host, run.started)
            run.switched = True
        case Watch(seconds=seconds):
            await _watch(run, seconds)
        case StopPrevious(after_seconds=after) if after > 0:
            keep_previous_version(run.docker_host, run.started, after)
        case StopPrevious():
            stop_previous_version(run.docker_host, run.started)
        case _:
            raise TypeError(f"no executor for step {step!r}")


async def _pause(seconds: float) -> None:
    """An analysis window, cut short when the run is cancelled."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(left, CANCEL_CHECK_SECONDS))
        raise_if_cancelled()


async def _analyze(run: _Run) -> None:
    rollout = run.started
    if not run.weight:
        raise RuntimeError("plan error: Analyze must follow SetWeight")
    analysis = run.env.analysis
    if analysis.metrics == "haproxy" and run.opened is None:
        # kubernetes without a metrics source: only the alarms can judge
        judgement = judge_alarms(_alarm_states(run))
        get_run_logger().info(
            "%s canary at %s%% judged by CloudWatch alarms only: %s (%s)",
            run.spec.service,
            run.weight,
            judgement.verdict.value,
            "; ".join(judgement.reasons) or "no alarm in ALARM",
        )
        await _decide(run, judgement.verdict, judgement.reasons)
        return
    judgement = analyze_canary(
        run.spec,
        run.weight,
        (run.step, run.analyses),
        _traffic(run),
        run.opened_at,
        analysis,
        (str(flow_run.id), flow_run.parent_flow_run_id),
        artifact_key(run.spec.app, run.spec.service, run.spec.environment, "canary"),
        _alarm_states(run),
    )
    # A canary that died early in the window, once HAProxy's checks mark it down, gets no
    # more attempts to fail, so its counters can look clean (or too few to judge); the next
    # step would then send traffic to it. Its health endpoint says what the counters cannot.
    health = f"{rollout.slot_url}{run.spec.route.health}" if isinstance(rollout, Rollout) else ""
    if health and judgement.verdict != Verdict.FAILED and not health_ok(health):
        await _decide(run, Verdict.FAILED, [f"the canary stopped answering {health}"])
    await _decide(run, judgement.verdict, judgement.reasons)


def _alarm_states(run: _Run) -> dict[str, str] | None:
    """The environment's analysis alarms' states now; None when it names none."""
    alarms = list(run.env.analysis.cloudwatch_alarms)
    where = f"relay.yaml: environments.{run.spec.environment}.analysis.cloudwatch_alarms"
    return read_alarm_states(alarms, where) if alarms else None


def _traffic(run: _Run) -> Traffic:
    """Both versions' traffic in the step's window, from the environment's metrics source:
    CloudWatch metrics, Prometheus, or HAProxy's counters read now against those read when it
    opened. A source that cannot be read gives no data, saying why (inconclusive, not failed)."""
    analysis, spec, now = run.env.analysis, run.spec, datetime.now(UTC)
    if analysis.metrics == "cloudwatch" and analysis.cloudwatch_metrics is not None:
        source = f"CloudWatch ({analysis.cloudwatch_metrics.namespace})"
        try:
            found = read_version_traffic(
                analysis.cloudwatch_metrics, spec.service, spec.environment, run.opened_at, now
            )
        except RelayError as exc:
            return Traffic(source, None, unavailable=f"{source} could not be read: {exc}")
        return Traffic(source, found["canary"], found["stable"])
    if analysis.metrics == "prometheus" and analysis.prometheus is not None:
        address = analysis.prometheus.address or prometheus_url()
        if address is None:
            return Traffic("Prometheus", None, unavailable=NO_PROMETHEUS)
        seconds = (now - run.opened_at).total_seconds()
        values = placeholders(spec.app, spec.service, spec.environment, _versions(run), seconds)
        try:
            return read_prometheus_traffic(analysis.prometheus, address, values, now)
        except RelayError as exc:
            return Traffic("Prometheus", None, unavailable=str(exc))
    closed = read_slot_counters(run.started)
    if run.opened is None or closed is None:
        raise RuntimeError("the platform gave counters when the window opened, none now")
    stable = (
        recent_window(run.opened.stable, closed.stable)
        if run.opened.stable is not None and closed.stable is not None
        else None
    )
    return Traffic("HAProxy", window(run.opened.canary, closed.canary), stable)


NO_PROMETHEUS = (
    "no Prometheus to ask: set analysis.prometheus.address in relay.yaml, or RELAY_PROMETHEUS_URL "
    "in the worker's environment"
)


def _versions(run: _Run) -> dict[str, str]:
    """What the canary and the stable version are called in metrics: their slots (docker,
    `blue`/`green`) or tracks (kubernetes)."""
    rollout = run.started
    stable = rollout.stable
    if stable is None:
        return {"canary": rollout.slot, "stable": ""}
    return {
        "canary": rollout.slot,
        "stable": stable.slot if isinstance(rollout, Rollout) else stable.track,
    }


async def _watch(run: _Run, seconds: float) -> None:
    """Judge the new version with all traffic for `seconds`, from the environment's metrics
    source, by the absolute limits and alarms; a failure puts the previous version back (on
    docker it still runs: the weights move back; on kubernetes it is rolled out again), and
    so does a source that could not be read under `on_inconclusive: fail`. Any other error
    on the way (a cancellation, an alarm that does not exist) puts it back too."""
    rollout = run.started
    analysis = run.env.analysis
    unreadable = False
    try:
        run.opened, run.opened_at = read_slot_counters(rollout), datetime.now(UTC)
        await _pause(seconds)
        states = _alarm_states(run)
        if analysis.metrics == "haproxy" and run.opened is None:
            judgement = judge_alarms(states)
        else:
            traffic = _traffic(run)
            unreadable = bool(traffic.unavailable)
            judgement = judge_watch(run.spec, seconds, traffic, analysis, states)
    except BaseException:
        abort_rollout(run.docker_host, rollout)
        raise
    # Too few requests says nothing; a metrics source that could not be read is blindness,
    # which `on_inconclusive: fail` does not accept.
    blind = unreadable and analysis.on_inconclusive == "fail"
    if judgement.verdict == Verdict.FAILED or (judgement.verdict == Verdict.INCONCLUSIVE and blind):
        abort_rollout(run.docker_host, rollout)
        raise WatchFailed(
            f"{run.spec.service}: failed while watched with all traffic after the switch "
            f"({'; '.join(judgement.reasons)}); the previous version serves again"
        )


async def _decide(run: _Run, verdict: Verdict, reasons: list[str]) -> None:
    step = next_step(
        verdict,
        reasons,
        run.weight,
        run.env.analysis,
        run.env.approval.timeout_seconds,
        INCONCLUSIVE_WAIT_SECONDS,
    )
    if step.action == "stop":
        raise StageFailed(step.reason)
    if step.action == "ask":
        await _ask(run, step.reason, step.wait_seconds)


async def _ask(run: _Run, reasons: str, wait: int) -> None:
    """`on_inconclusive: pause`: the environment's approval subflow decides, with its rules
    (approvers, tokens, alarms, a notification with the link) and a shorter wait, while the
    traffic stays split. Approve continues; reject or no answer rolls back."""
    get_run_logger().warning(
        "%s canary at %s%% is inconclusive (%s); waiting up to %s s for a person",
        run.spec.service,
        run.weight,
        reasons,
        wait,
    )
    description = (
        f"The canary of **{run.spec.service}** ({run.spec.image}) at {run.weight}% is "
        f"inconclusive: {reasons}. Approve to continue, reject to roll back."
    )
    try:
        await approval(
            run.spec.app,
            run.spec.environment,
            description,
            run.env.approval.model_copy(update={"timeout_seconds": wait}),
            [],  # the commit's author is not known here: self-approval is not checked
        )
    except NotApproved as exc:
        raise StageFailed(f"the inconclusive canary at {run.weight}% was stopped: {exc}") from exc
