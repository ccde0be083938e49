"""Promotion benchmark: a release of 20 services promoted with canaries, over their DAG.

A promotion deploys the services that differ over the dependency graph (`flows.promote`): a
provider before its consumers, independent services at once, as many as the release's
concurrency. This times that scheduling with Relay's own code and Prefect's real engine, on
the stack's Prefect server: an async flow with a `ThreadPoolTaskRunner(max_workers=C)` hands
the graph to `flows.dag.settle_over_graph` in a thread (exactly as `_deploy_train` does), and
each service is a sync task that runs a canary subflow with `asyncio.run`, as
`roll_out_service` does. The canary is the strategy's shape without a platform: per step
(10, 50, 100 %) a task that would set the weight, then the analysis window, a fixed sleep
(`--window`, 2 s; the default `interval_seconds` is 10).

The DAG: 20 services in four layers (6, 6, 5, 3), each depending on one or two services of
earlier layers, at least one of the layer just before (seeded). The figure is the makespan
(first weight set to last window ended, inside the flow) over the lower bound
max(critical path, total work / C), where a service's work is its three windows; the target
is <= 1.1. Before releases were units, a promotion deployed its services one after the other:
its makespan was the sum of the work, printed beside it.

Prints a table and merges the numbers into bench/results.json under `promotion`
(`--backend postgresql`: the same against a PostgreSQL-backed Prefect server this benchmark
starts, bench/postgres.py, under `promotion_postgresql`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import devstack  # noqa: E402
from bench.postgres import ON_POSTGRES, rerun_on_postgres  # noqa: E402
from bench.results import write_results  # noqa: E402

# Prefect reads its settings at import time: the stack's environment first (as tests/conftest).
for _key, _value in devstack.environment().items():
    os.environ.setdefault(_key, _value)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from flows.client import one_client_for_tasks  # noqa: E402
from flows.dag import settle_over_graph  # noqa: E402
from relay.graph import restricted, topological_order  # noqa: E402

SEED = 20261206
LAYERS = (6, 6, 5, 3)
STEPS = (10, 50, 100)
CONCURRENCIES = (4, 8)
Graph = Mapping[str, Sequence[str]]

_lock = threading.Lock()
_spans: dict[str, tuple[float, float]] = {}  # service -> (first weight set, last window ended)


def make_dag(seed: int = SEED) -> dict[str, list[str]]:
    """20 services in layers; names shuffled so that the alphabet says nothing of the layers."""
    rng = random.Random(seed)
    total = sum(LAYERS)
    numbers = rng.sample(range(total), total)
    layers: list[list[str]] = []
    i = 0
    for size in LAYERS:
        layers.append([f"svc{numbers[i + k]:02d}" for k in range(size)])
        i += size
    deps: dict[str, list[str]] = {name: [] for name in layers[0]}
    for depth in range(1, len(layers)):
        earlier = [name for layer in layers[:depth] for name in layer]
        for name in layers[depth]:
            providers = [rng.choice(layers[depth - 1])]
            if rng.random() < 0.5 and (extra := rng.choice(earlier)) not in providers:
                providers.append(extra)
            deps[name] = providers
    return deps


def critical_path(deps: Graph, work: float) -> float:
    """The longest chain of services, in seconds of work (every service the same work)."""
    depth: dict[str, int] = {}
    for name in topological_order(deps):
        depth[name] = 1 + max((depth[p] for p in deps[name]), default=0)
    return max(depth.values()) * work


# -- the promotion ---------------------------------------------------------------------------


@task(name="set-canary-weight", cache_policy=NO_CACHE)
def set_weight(service: str, percent: int) -> int:
    """Where the platform would shift traffic: nothing but a task run, as Prefect records one."""
    return percent


@flow(name="bench-canary", flow_run_name="canary-{service}")
async def canary(service: str, window: float) -> None:
    with one_client_for_tasks():
        started = time.monotonic()
        for percent in STEPS:
            set_weight(service, percent)
            await asyncio.sleep(window)  # the analysis window
        with _lock:
            _spans[service] = (started, time.monotonic())


@task(name="roll-out-service", cache_policy=NO_CACHE)
def roll_out_service(service: str, window: float) -> str:
    """As flows.promote.roll_out_service: the strategy subflow on this thread's event loop."""
    asyncio.run(canary(service, window))
    return service


@flow(name="bench-promotion", flow_run_name="bench-promotion-c{concurrency}")
async def promotion(deps: dict[str, list[str]], window: float, concurrency: int) -> dict[str, Any]:
    with one_client_for_tasks():
        start = time.monotonic()
        run = await asyncio.to_thread(
            settle_over_graph,
            restricted(deps, list(deps)),
            roll_out_service,
            stop_on_failure=True,
            window=window,
        )
        end = time.monotonic()
    if run.failures:
        raise RuntimeError(f"services failed: {sorted(run.failures)}")
    return {"start": start, "end": end}


def measure(deps: Graph, window: float, concurrency: int) -> dict[str, Any]:
    _spans.clear()
    runner = ThreadPoolTaskRunner(max_workers=concurrency)
    marks = asyncio.run(promotion.with_options(task_runner=runner)(dict(deps), window, concurrency))
    spans = dict(_spans)
    missing = sorted(set(deps) - set(spans))
    if missing:
        raise RuntimeError(f"never deployed: {', '.join(missing)}")
    first = min(s for s, _ in spans.values())
    last = max(e for _, e in spans.values())
    work = len(STEPS) * window
    bound = max(critical_path(deps, work), len(deps) * work / concurrency)
    order_ok = all(spans[p][1] <= spans[name][0] for name in deps for p in deps[name])
    overlap = max(sum(1 for s, e in spans.values() if s <= t < e) for t, _ in spans.values())
    return {
        "concurrency": concurrency,
        "makespan_s": round(last - first, 3),
        "flow_s": round(marks["end"] - marks["start"], 3),
        "bound_s": round(bound, 3),
        "critical_path_s": round(critical_path(deps, work), 3),
        "work_over_concurrency_s": round(len(deps) * work / concurrency, 3),
        "serial_s": round(len(deps) * work, 3),
        "ratio": round((last - first) / bound, 3),
        "providers_first": order_ok,
        "max_at_once": overlap,
        "per_service_overhead_s": round(
            sorted(e - s - work for s, e in spans.values())[len(spans) // 2], 3
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=2.0, help="seconds per canary step (2)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    if args.backend == "postgresql" and not os.environ.get(ON_POSTGRES):
        return rerun_on_postgres(__file__)
    deps = make_dag()
    results = [measure(deps, args.window, c) for c in CONCURRENCIES]
    print(f"promotion of {len(deps)} services, canary {list(STEPS)} with {args.window} s windows")
    headers = ("C", "makespan", "bound", "ratio", "serial", "at once", "order")
    print(" ".join(f"{h:>9}" for h in headers))
    for r in results:
        cells = (
            r["concurrency"],
            f"{r['makespan_s']:.2f}s",
            f"{r['bound_s']:.2f}s",
            f"{r['ratio']:.3f}",
            f"{r['serial_s']:.1f}s",
            r["max_at_once"],
            "ok" if r["providers_first"] else "BROKEN",
        )
        print(" ".join(f"{c:>9}" for c in cells))
    path = write_results(
        "promotion" if args.backend == "sqlite" else "promotion_postgresql",
        {
            "backend": args.backend,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "services": len(deps),
            "window_s": args.window,
            "steps": list(STEPS),
            "runs": results,
        },
    )
    print(f"results: {path}")
    return 0 if all(r["providers_first"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
