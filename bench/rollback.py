"""Rollback benchmark: how fast a bad canary is taken out, and what clients see meanwhile.

Two measurements, N repetitions each, in one run, on the local stack (real Docker engine,
HAProxy, Prefect server) under a steady request load (`tests.echo.Load`):

1. platform level: v1 serves; a bad version (50% of its requests answer 500) starts next to it
   and gets 20% of the traffic; then `DockerPlatform.abort` is timed, split into "weights back"
   (the router's `set weight` calls returned) and "container removed" (abort returned).
2. flow level: the canary subflow (`flows.strategies.canary`) on the bad image with a short
   analysis interval, end to end until it is rolled back.

Prints a table (median and max per metric) and merges the raw numbers into bench/results.json
under the `rollback` key. Run it with `make bench` (which brings the stack up if needed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform as pyplatform
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tests.echo` is not an installed package

import devstack  # noqa: E402
from bench.results import write_results  # noqa: E402

# Prefect reads its settings at import time: the stack's environment first (as tests/conftest).
for _key, _value in devstack.environment().items():
    os.environ.setdefault(_key, _value)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import docker  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId  # noqa: E402
from prefect_docker import DockerHost  # noqa: E402

from flows.strategies import canary, rolling  # noqa: E402
from relay.manifest import Analysis, Environment  # noqa: E402
from relay.platforms.docker import DeploySpec, DockerPlatform  # noqa: E402
from relay.registry import ImageRef  # noqa: E402
from relay.settings import relay_home  # noqa: E402
from relay.traffic import HAProxyRouter, Route, TrafficRouter, make_router  # noqa: E402
from tests.echo import Load, make_image  # noqa: E402

APP = f"bench{uuid.uuid4().hex[:6]}"
ENVIRONMENT = "bench"
ROUTER_NAME = f"{APP}-{ENVIRONMENT}"  # as tasks.deploy names it
SERVICE = "echo"
PUBLIC = 23501
ROUTE = Route(SERVICE, PUBLIC, {"blue": PUBLIC + 1, "green": PUBLIC + 2})
URL = f"http://127.0.0.1:{PUBLIC}/"
CANARY_WEIGHT = 20
BAD_FAIL_PERCENT = 50
LOAD_INTERVAL = 0.01  # seconds between requests of the sequential load (tests.echo default)
LOAD_MAX_SECONDS = 90  # every Load is bounded in time (and stopped as soon as its run is done)

ENV = Environment(
    port_offset=0,
    secrets="unused",
    strategy="canary",
    canary_steps=[CANARY_WEIGHT, 50, 100],
    analysis=Analysis(interval_seconds=2, min_requests=10, max_error_rate=0.05),
    keep_previous_seconds=1,
)


class WeightCalls:
    """When each `set weight` of this benchmark's router returned (monotonic seconds).

    Instrumentation, not a reimplementation: `HAProxyRouter.set_weight` is wrapped in this
    process for the benchmark's duration, so both `DockerPlatform.abort` (platform level) and
    the canary flow's abort task (flow level, which builds its own router) are timed. Only
    calls for this benchmark's router are recorded; the original method is put back on exit.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[float, float, dict[str, int]]] = []  # (start, end, weights)

    @contextmanager
    def installed(self) -> Iterator[WeightCalls]:
        original = HAProxyRouter.set_weight
        calls = self.calls

        def set_weight(router: HAProxyRouter, service: str, weights: dict[str, int]) -> None:
            start = time.monotonic()
            original(router, service, weights)
            if router.name == ROUTER_NAME:
                calls.append((start, time.monotonic(), dict(weights)))

        HAProxyRouter.set_weight = set_weight  # type: ignore[method-assign]
        try:
            yield self
        finally:
            HAProxyRouter.set_weight = original  # type: ignore[method-assign]

    def since(self, t: float) -> list[tuple[float, float, dict[str, int]]]:
        return [call for call in self.calls if call[0] >= t]


def spec(image: str) -> DeploySpec:
    return DeploySpec(
        app=APP,
        environment=ENVIRONMENT,
        service=SERVICE,
        image=ImageRef.parse(image),
        commit="bench",
        tree="bench",
        route=ROUTE,
        health_timeout=30,
    )


def ports_free() -> None:
    for port in (ROUTE.public_port, *ROUTE.slots.values()):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                sys.exit(f"port {port} is in use; the rollback benchmark needs 23501-23503")


# -- 1. platform level -------------------------------------------------------------------------


def platform_run(platform: DockerPlatform, weights: WeightCalls, bad: str) -> dict[str, Any]:
    """One bad canary at 20% under load, then `abort` timed and watched from the client side."""
    with Load(URL, max_seconds=LOAD_MAX_SECONDS, interval=LOAD_INTERVAL) as load:
        load.wait_for_more(30)
        rollout = platform.start_new(spec(bad))
        platform.set_canary_weight(rollout, CANARY_WEIGHT)
        mark = len(load.log)
        load.wait_for_more(150, timeout=30)  # the canary serves its share for a while
        before = load.versions(since=load.log[mark][0])
        if before["bad"] == 0:
            raise RuntimeError(f"the bad version got no traffic at {CANARY_WEIGHT}%: {before}")

        log_start, errors_start = len(load.log), len(load.transport_errors)
        t0 = time.monotonic()
        platform.abort(rollout)
        t_end = time.monotonic()
        log_end, errors_end = len(load.log), len(load.transport_errors)
        load.wait_for_more(100, timeout=30)
        log_after_errors = len(load.transport_errors)
    calls = weights.since(t0)
    weights_back = calls[-1][1] if calls else t_end
    window = load.log[log_start:log_end]
    after = load.log[log_start:]
    bad_after = [t for t, v, _ in after if v == "bad" and t >= t0]
    # Load is sequential: a response's request left right after the previous response.
    in_flight = 0
    for i in range(log_start, len(load.log)):
        t, v, _ = load.log[i]
        if v == "bad" and t > weights_back and load.log[i - 1][0] < weights_back:
            in_flight += 1
    remaining = [r.name for r in platform.running(APP, ENVIRONMENT, SERVICE)]
    return {
        "abort_s": t_end - t0,
        "weights_back_s": weights_back - t0,
        "container_removed_s": t_end - t0,
        "set_weight_calls": [
            {"start_s": s - t0, "end_s": e - t0, "weights": w} for s, e, w in calls
        ],
        "last_bad_response_s": (max(bad_after) - t0) if bad_after else 0.0,
        "bad_responses_after_abort_call": len(bad_after),
        "bad_responses_after_weights_back": sum(1 for t in bad_after if t > weights_back),
        "bad_after_weights_back_in_flight": in_flight,
        "window_responses": len(window),
        "window_transport_errors": errors_end - errors_start,
        "window_stable_non_200": sum(1 for _, v, s in window if v == "v1" and s != 200),
        "window_proxy_errors": sum(1 for _, v, s in window if v not in {"v1", "bad"}),
        "after_abort_transport_errors": log_after_errors - errors_start,
        "after_abort_non_200": sum(1 for _, v, s in after if s != 200 and v != "bad"),
        "canary_share_before_abort": before["bad"] / max(1, sum(before.values())),
        "weights_after": platform.router.weights(SERVICE),
        "new_container_gone": rollout.container not in remaining,
        "transport_error_samples": load.transport_errors[errors_start : errors_start + 3],
    }


# -- 2. flow level -----------------------------------------------------------------------------


def _task_times(flow_run_id: Any, deadline_s: float = 15) -> dict[str, tuple[float, float]]:
    """(start, end) wall times of the canary's task runs, as the Prefect server recorded them.

    Task run states reach the server through events, a little after the flow returned: bounded
    polling until the abort task has an end time.
    """
    deadline = time.monotonic() + deadline_s
    found: dict[str, tuple[float, float]] = {}
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            found = {
                run.name.rsplit("-", 1)[0]: (run.start_time.timestamp(), run.end_time.timestamp())
                for run in runs
                if run.start_time is not None and run.end_time is not None
            }
            if "abort-rollout" in found and "analyze-canary" in found:
                break
            time.sleep(0.5)
    return found


def flow_run(host: DockerHost, weights: WeightCalls, bad: str) -> dict[str, Any]:
    """The whole canary subflow on the bad image, rolled back by its analysis.

    "Decision" is the end of the `analyze-canary` task run (Prefect's own timestamp); "weights
    back" is the return of the abort task's `set weight` (stable 100, canary 0).
    """
    with Load(URL, max_seconds=LOAD_MAX_SECONDS, interval=LOAD_INTERVAL) as load:
        load.wait_for_more(30)
        mark, errors_start = len(load.log), len(load.transport_errors)
        wall_offset = time.time() - time.monotonic()
        t0 = time.monotonic()
        state = asyncio.run(canary(host, spec(bad), ENV, True, None, return_state=True))
        t1 = time.monotonic()
        log_end, errors_end = len(load.log), len(load.transport_errors)
        load.wait_for_more(50)
    message = state.message or ""
    if not state.is_failed() or "canary analysis failed" not in message:
        raise RuntimeError(f"the bad canary was not rolled back by its analysis: {state!r}")
    calls = weights.since(t0)
    if len(calls) < 2 or 100 not in calls[-1][2].values():
        raise RuntimeError(f"expected the canary's and the abort's set weight calls: {calls}")
    step_start, weights_back = calls[0][1], calls[-1][1]
    during = load.log[mark:log_end]
    seen = load.versions(since=t0, until=t1)
    at_step = load.versions(since=step_start, until=weights_back)
    bad_times = [t for t, v, _ in load.log[mark:] if v == "bad"]
    tasks = {  # wall clock -> this process's monotonic clock
        name: (start - wall_offset, end - wall_offset)
        for name, (start, end) in _task_times(state.state_details.flow_run_id).items()
    }
    result: dict[str, Any] = {
        "canary_wall_s": t1 - t0,
        "requests": sum(seen.values()),
        "bad_requests": seen["bad"],
        "bad_share": seen["bad"] / max(1, sum(seen.values())),
        "bad_share_at_step": at_step["bad"] / max(1, sum(at_step.values())),
        "transport_errors": errors_end - errors_start,
        "stable_non_200": sum(1 for _, v, s in during if v == "v1" and s != 200),
        "proxy_errors": sum(1 for _, v, s in during if v not in {"v1", "bad"}),
        "bad_after_weights_back": sum(1 for t in bad_times if t > weights_back),
        "bad_after_flow_returned": sum(1 for t in bad_times if t > t1),
        "state_message": message[:300],
        "set_weight_calls": [
            {"start_s": s - t0, "end_s": e - t0, "weights": w} for s, e, w in calls
        ],
        "task_runs": {
            name: {"start_s": start - t0, "end_s": end - t0}
            for name, (start, end) in sorted(tasks.items(), key=lambda kv: kv[1][0])
        },
    }
    if tasks:
        result["flow_setup_s"] = min(start for start, _ in tasks.values()) - t0
    if "analyze-canary" in tasks:
        decided = tasks["analyze-canary"][1]
        result["decision_to_weights_back_s"] = weights_back - decided
        result["bad_after_decision"] = sum(1 for t in bad_times if t > decided)
        result["last_bad_minus_decision_s"] = max(bad_times) - decided if bad_times else None
        if "abort-rollout" in tasks:
            result["decision_to_abort_done_s"] = tasks["abort-rollout"][1] - decided
    return result


# -- reporting ---------------------------------------------------------------------------------


def _ms(x: float) -> str:
    return f"{x * 1e3:.1f} ms"


def _s(x: float) -> str:
    return f"{x:.2f} s"


def _pct(x: float) -> str:
    return f"{x:.1%}"


ROWS: list[tuple[str, str, str, Callable[[float], str]]] = [
    # (section, key, label, format)
    ("platform", "weights_back_s", "abort: weights back (set weight)", _ms),
    ("platform", "container_removed_s", "abort: new container removed", _s),
    ("platform", "last_bad_response_s", "abort call -> last bad response", _ms),
    ("platform", "bad_responses_after_abort_call", "bad responses after abort call", str),
    ("platform", "bad_responses_after_weights_back", "bad responses after weights back", str),
    ("platform", "window_transport_errors", "transport errors in abort window", str),
    ("platform", "window_stable_non_200", "stable non-200 in abort window", str),
    ("platform", "window_proxy_errors", "proxy errors (no version) in window", str),
    ("platform", "window_responses", "responses in abort window", str),
    ("flow", "canary_wall_s", "canary wall time (rolled back)", _s),
    ("flow", "flow_setup_s", "flow call -> first task starts", _s),
    ("flow", "decision_to_weights_back_s", "analysis 'failed' -> weights back", _ms),
    ("flow", "decision_to_abort_done_s", "analysis 'failed' -> abort task done", _ms),
    ("flow", "bad_after_decision", "bad responses after 'failed'", str),
    ("flow", "bad_after_weights_back", "bad responses after weights back", str),
    ("flow", "bad_share", "bad version's share, whole canary", _pct),
    ("flow", "bad_share_at_step", "bad version's share, 20% step", _pct),
    ("flow", "transport_errors", "transport errors during canary", str),
    ("flow", "stable_non_200", "stable non-200 during canary", str),
]


TITLES = {
    "platform": f"platform level (DockerPlatform.abort at {CANARY_WEIGHT}%)",
    "flow": "flow level (flows.strategies.canary, bad image)",
}


def _fmt_stat(values: list[float], fmt: Callable[[float], str], median: bool) -> str:
    if not values:
        return "n/a"
    value = statistics.median(values) if median else max(values)
    if fmt is str and median and value != int(value):
        return f"{value:.1f}"
    return fmt(int(value)) if fmt is str else fmt(value)


def summarize(platform_runs: list[dict[str, Any]], flow_runs: list[dict[str, Any]]) -> dict:
    sections = {"platform": platform_runs, "flow": flow_runs}
    summary: dict[str, dict[str, float | None]] = {}
    for section, key, _, _ in ROWS:
        values = [r[key] for r in sections[section] if r.get(key) is not None]
        summary[f"{section}.{key}"] = {
            "median": statistics.median(values) if values else None,
            "max": max(values) if values else None,
        }
    weights = summary["platform.weights_back_s"]["median"]
    wall = summary["flow.canary_wall_s"]["median"]
    summary["weights_back_over_canary_wall"] = {
        "median": weights / wall if weights is not None and wall else None,
        "max": None,
    }
    return summary


def print_table(
    platform_runs: list[dict[str, Any]], flow_runs: list[dict[str, Any]], summary: dict
) -> None:
    sections = {"platform": platform_runs, "flow": flow_runs}
    width = max(len(label) for _, _, label, _ in ROWS) + 2
    print(f"\nrollback benchmark: {len(platform_runs)} platform runs, {len(flow_runs)} flow runs")
    print(f"{'metric':<{width}}{'median':>12}{'max':>12}")
    current = ""
    for section, key, label, fmt in ROWS:
        if section != current:
            current = section
            print(f"-- {TITLES[section]}")
        values = [r[key] for r in sections[section] if r.get(key) is not None]
        median, largest = _fmt_stat(values, fmt, True), _fmt_stat(values, fmt, False)
        print(f"{label:<{width}}{median:>12}{largest:>12}")
    ratio = summary["weights_back_over_canary_wall"]["median"]
    text = f"{ratio:.2e}" if ratio is not None else "n/a"
    print(f"{'weights back / canary wall (medians)':<{width}}{text:>12}")


# -- main --------------------------------------------------------------------------------------


@contextmanager
def cleanup(client: docker.DockerClient, router: TrafficRouter) -> Iterator[None]:
    """Everything the benchmark starts goes, also on failure."""
    try:
        yield
    finally:
        removed = DockerPlatform(client, router).remove_all(APP, ENVIRONMENT)
        router.remove_managed_routes()
        directory = getattr(router, "dir", None)
        pidfile = getattr(router, "pidfile", None)
        if directory is not None and APP in str(directory):
            shutil.rmtree(directory, ignore_errors=True)
        if pidfile is not None and APP in str(pidfile):
            Path(pidfile).unlink(missing_ok=True)
        print(f"cleanup: removed {removed} container(s) and the HAProxy router of {APP}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each measurement")
    args = parser.parse_args()
    if not 1 <= args.runs <= 50:
        parser.error("--runs must be within 1..50")
    if not devstack.status().all_running:
        sys.exit("the local stack is not running; use `make bench` (it starts the stack)")
    ports_free()

    started = time.monotonic()
    router = make_router("haproxy", name=ROUTER_NAME, home=relay_home())
    weights = WeightCalls()
    repository = f"{os.environ['RELAY_REGISTRY']}/relay-bench/echo"
    platform_runs: list[dict[str, Any]] = []
    flow_runs: list[dict[str, Any]] = []
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    with (
        closing(client),
        cleanup(client, router),
        weights.installed(),
        tempfile.TemporaryDirectory() as tmp,
    ):
        print(f"building the echo images ({repository}: v1, bad with {BAD_FAIL_PERCENT}% 500s)")
        v1 = make_image(client, Path(tmp), repository, "v1")
        bad = make_image(client, Path(tmp), repository, "bad", fail_percent=BAD_FAIL_PERCENT)
        host = DockerHost()
        # v1 serves, as in the strategy tests
        asyncio.run(rolling(host, spec(v1), ENV, False, None))
        platform = DockerPlatform(client, router)
        for i in range(args.runs):
            run = platform_run(platform, weights, bad)
            platform_runs.append(run)
            print(
                f"platform run {i + 1}/{args.runs}: weights back "
                f"{run['weights_back_s'] * 1e3:.1f} ms, removed {run['abort_s']:.2f} s, "
                f"bad after abort {run['bad_responses_after_abort_call']}"
            )
        for i in range(args.runs):
            run = flow_run(host, weights, bad)
            flow_runs.append(run)
            print(
                f"flow run {i + 1}/{args.runs}: canary {run['canary_wall_s']:.2f} s, "
                f"bad share {run['bad_share']:.1%}"
            )
    runtime = time.monotonic() - started
    summary = summarize(platform_runs, flow_runs)
    print_table(platform_runs, flow_runs, summary)
    path = write_results(
        "rollback",
        {
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "nproc": len(os.sched_getaffinity(0)),
                "python": pyplatform.python_version(),
                "platform": pyplatform.platform(),
            },
            "config": {
                "runs": args.runs,
                "canary_weight": CANARY_WEIGHT,
                "bad_fail_percent": BAD_FAIL_PERCENT,
                "analysis": ENV.analysis.model_dump(),
                "load_interval_s": LOAD_INTERVAL,
                "images": {"v1": v1, "bad": bad},
            },
            "runtime_s": runtime,
            "summary": summary,
            "platform_runs": platform_runs,
            "flow_runs": flow_runs,
        },
    )
    print(f"runtime {runtime:.1f} s; raw numbers in {path.relative_to(ROOT)} (key: rollback)")


if __name__ == "__main__":
    main()
