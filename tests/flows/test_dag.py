"""run_over_graph with real Prefect task runs: order, concurrency, and failures."""

from __future__ import annotations

import threading
import time

import pytest
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

from flows.dag import run_over_graph

pytestmark = pytest.mark.stack

DEPS = {"a": [], "b": ["a"], "c": [], "d": ["b", "c"], "e": []}
LOG: list[tuple[str, str, float]] = []
LOCK = threading.Lock()


@task
def step(name: str, fail: str = "") -> str:
    with LOCK:
        LOG.append((name, "start", time.monotonic()))
    time.sleep(0.3)
    with LOCK:
        LOG.append((name, "end", time.monotonic()))
    if name == fail:
        raise RuntimeError(f"{name} failed on purpose")
    return name.upper()


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
def over(fail: str = "") -> dict[str, str]:
    return run_over_graph(DEPS, step, fail=fail)


def times(kind: str) -> dict[str, float]:
    return {name: t for name, k, t in LOG if k == kind}


def test_each_node_waits_for_its_providers_only() -> None:
    LOG.clear()
    assert over() == {n: n.upper() for n in DEPS}
    start, end = times("start"), times("end")
    for name, providers in DEPS.items():
        assert all(end[p] <= start[name] for p in providers), name
    running = max(sum(1 for n in DEPS if start[n] <= t < end[n]) for t in start.values())
    assert running == 2, "two at once: the task runner's bound, never idle behind a blocked node"


def test_a_failure_stops_its_consumers_and_nothing_else() -> None:
    LOG.clear()
    with pytest.raises(RuntimeError, match="b failed on purpose"):
        over(fail="b")
    started = set(times("start"))
    assert "d" not in started, "d depends on b"
    assert {"a", "b", "c", "e"} <= started
