"""Fleet benchmark: release makespan over a service DAG vs. its lower bound, and builds per change.

1. Makespan. A synthetic fleet of 50 services (six layers of 6/10/12/10/8/4, each service
   depending on 1-3 services of earlier layers, at least one of the layer just before it, plus
   three long chains through every layer; fixed seed) is released by Relay's own scheduling:
   `flows.dag.run_over_graph` inside a flow whose task runner is
   `ThreadPoolTaskRunner(max_workers=C)`, exactly as `flows.release` ships services. Each
   service's work is a task that sleeps a known, seeded time (0.2-1.2 s). For C in (4, 8) it
   times the makespan inside the flow (around `run_over_graph`) and the whole flow call, and
   compares them with
     - the lower bound max(critical path, total work / C), not always reachable by any scheduler;
     - a greedy list scheduler (simulated; priority = longest remaining path), what a good
       scheduler reaches on this DAG with C workers and no overhead;
     - a model of the scheduler Relay had before (simulated): every task submitted at once in
       `topological_order` with `wait_for`, so a worker that takes a task waits there, holding
       its slot, until the task's providers are done. This benchmark found that it reached only
       1.5x the bound; `run_over_graph` now submits a task once it is ready, longest chain first.
   Each task records when its sleep started and ended and on which thread, so Prefect's own
   per-task overhead is measured directly: the gap between the moment a task could have started
   (its providers' sleeps ended and its thread's previous sleep ended) and its sleep's start.
2. Builds per change. A temporary git repository with 20 services (one directory and file
   each, a 20-service DAG); for each service in turn, a commit off the same base changes that
   service's file. Relay's functions decide the scope: `relay.git.changed_files`,
   `relay.graph.services_touched` and `relay.graph.impact`; `relay.git.tree_hash` of every
   service at both commits says which images are built (a service whose tree hash is
   unchanged reuses its image, as `flows.service_pipeline` does with `find_image`).

Prints a table and merges the numbers into bench/results.json under the `fleet` key (other keys
are left alone). Run it with `make bench` (which brings the stack up if needed).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import platform as pyplatform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import devstack  # noqa: E402
from bench.results import write_results  # noqa: E402

# Prefect reads its settings at import time: the stack's environment first (as tests/conftest).
for _key, _value in devstack.environment().items():
    os.environ.setdefault(_key, _value)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from flows.client import one_client_for_tasks  # noqa: E402
from flows.dag import run_over_graph  # noqa: E402
from relay import git  # noqa: E402
from relay.graph import impact, services_touched, topological_order, waves  # noqa: E402

SEED = 20261127
LAYERS = (6, 10, 12, 10, 8, 4)
CHAINS = 3
CONCURRENCIES = (4, 8)
Graph = Mapping[str, Sequence[str]]


# -- the fleet ---------------------------------------------------------------------------------


def make_fleet(seed: int = SEED) -> tuple[dict[str, list[str]], dict[str, float]]:
    """(deps, durations) of the 50-service fleet. Names do not encode layers (shuffled
    numbers), so `topological_order`'s alphabetical tie-break interleaves layers as it would
    for real service names."""
    rng = random.Random(seed)
    total = sum(LAYERS)
    numbers = rng.sample(range(total), total)
    layers: list[list[str]] = []
    i = 0
    for size in LAYERS:
        layers.append([f"svc{numbers[i + k]:02d}" for k in range(size)])
        i += size
    # the long chains go through distinct services of each layer
    chains = [list(c) for c in zip(*(rng.sample(layer, CHAINS) for layer in layers), strict=True)]
    on_chain = {name for chain in chains for name in chain}

    deps: dict[str, list[str]] = {name: [] for name in layers[0]}
    for depth in range(1, len(layers)):
        earlier = [name for layer in layers[:depth] for name in layer]
        for name in layers[depth]:
            providers: list[str] = []
            for chain in chains:
                if chain[depth] == name:
                    providers.append(chain[depth - 1])
            if not providers:
                providers.append(rng.choice(layers[depth - 1]))
            for _ in range(rng.randint(1, 3) - len(providers)):
                candidate = rng.choice(earlier)
                if candidate not in providers:
                    providers.append(candidate)
            deps[name] = providers
    durations = {
        name: round(rng.uniform(0.9, 1.2) if name in on_chain else rng.uniform(0.2, 0.9), 3)
        for name in deps
    }
    return deps, durations


def critical_path(deps: Graph, durations: Mapping[str, float]) -> tuple[float, list[str]]:
    """The longest path by summed durations, and its services (providers first)."""
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for name in topological_order(deps):
        best = max(deps[name], key=lambda p: finish[p], default=None)
        via[name] = best
        finish[name] = (finish[best] if best else 0.0) + durations[name]
    end = max(finish, key=lambda n: finish[n])
    path: list[str] = []
    node: str | None = end
    while node is not None:
        path.append(node)
        node = via[node]
    return finish[end], path[::-1]


def _consumers(deps: Graph) -> dict[str, list[str]]:
    consumers: dict[str, list[str]] = {name: [] for name in deps}
    for name, providers in deps.items():
        for provider in providers:
            consumers[provider].append(name)
    return consumers


def greedy_list_schedule(deps: Graph, durations: Mapping[str, float], workers: int) -> float:
    """Makespan of a greedy list scheduler, no overhead: whenever a worker is free it starts
    the ready task with the longest remaining path (its duration plus its longest chain of
    consumers)."""
    consumers = _consumers(deps)
    rank: dict[str, float] = {}
    for name in reversed(topological_order(deps)):
        rank[name] = durations[name] + max((rank[c] for c in consumers[name]), default=0.0)
    waiting = {name: len(deps[name]) for name in deps}
    ready = [(-rank[n], n) for n in deps if waiting[n] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now, free = 0.0, workers
    while ready or running:
        while free and ready:
            _, name = heapq.heappop(ready)
            heapq.heappush(running, (now + durations[name], name))
            free -= 1
        now, done = heapq.heappop(running)
        finished = [done]
        while running and running[0][0] == now:
            finished.append(heapq.heappop(running)[1])
        for name in finished:
            free += 1
            for consumer in consumers[name]:
                waiting[consumer] -= 1
                if waiting[consumer] == 0:
                    heapq.heappush(ready, (-rank[consumer], consumer))
    return now


def thread_pool_model(
    deps: Graph, durations: Mapping[str, float], workers: int, overhead: float = 0.0
) -> float:
    """Makespan of `run_over_graph` on a `ThreadPoolTaskRunner` as a model: tasks queued in
    `topological_order`, the next queued task goes to the first free worker, which holds it
    until the task's providers are done, then runs it (plus `overhead` per task)."""
    free = [0.0] * workers
    finish: dict[str, float] = {}
    for name in topological_order(deps):
        worker_free = heapq.heappop(free)
        start = max([worker_free, *(finish[p] for p in deps[name])]) + overhead
        finish[name] = start + durations[name]
        heapq.heappush(free, finish[name])
    return max(finish.values())


# -- the flow ----------------------------------------------------------------------------------

_lock = threading.Lock()
_spans: dict[str, tuple[float, float, int]] = {}  # name -> (sleep start, sleep end, thread)


@task(name="fleet-service", cache_policy=NO_CACHE)
def sleep_task(name: str, durations: dict[str, float]) -> float:
    """A service's release work: sleep its known duration; record when, and on which thread."""
    start = time.monotonic()
    time.sleep(durations[name])
    end = time.monotonic()
    with _lock:
        _spans[name] = (start, end, threading.get_ident())
    return end - start


@flow(name="bench-fleet", flow_run_name="bench-fleet-c{concurrency}", log_prints=False)
async def fleet_release(
    deps: dict[str, list[str]], durations: dict[str, float], concurrency: int
) -> dict[str, float]:
    """Relay's scheduling of a release (`flows.release`: an async flow, one client for its
    sync tasks), with sleeps for the work."""
    with one_client_for_tasks():
        start = time.monotonic()
        run_over_graph(deps, sleep_task, durations=durations)
        end = time.monotonic()
    return {"start": start, "end": end}


def release_run(deps: Graph, durations: Mapping[str, float], concurrency: int) -> dict[str, Any]:
    _spans.clear()
    release = fleet_release.with_options(task_runner=ThreadPoolTaskRunner(max_workers=concurrency))
    called = time.monotonic()
    marks = asyncio.run(release(dict(deps), dict(durations), concurrency))
    returned = time.monotonic()
    t0, t1 = marks["start"], marks["end"]
    spans = dict(_spans)
    missing = sorted(set(deps) - set(spans))
    if missing:
        raise RuntimeError(f"tasks never ran: {', '.join(missing)}")

    # Overhead per task: from when it could have started (its providers' sleeps done, and its
    # thread's previous sleep done) to when its own sleep started.
    by_thread: dict[int, list[str]] = {}
    for name in sorted(spans, key=lambda n: spans[n][0]):
        by_thread.setdefault(spans[name][2], []).append(name)
    gaps: list[float] = []
    for names in by_thread.values():
        previous_end = t0
        for name in names:
            ready = max([t0, *(spans[p][1] for p in deps[name])])
            gaps.append(spans[name][0] - max(ready, previous_end))
            previous_end = spans[name][1]
    max_running = max(
        sum(1 for s, e, _ in spans.values() if s <= start < e) for start, _, _ in spans.values()
    )
    return {
        "concurrency": concurrency,
        "makespan_s": t1 - t0,
        "flow_call_s": returned - called,
        "flow_setup_s": t0 - called,
        "flow_teardown_s": returned - t1,
        "first_sleep_after_s": min(s for s, _, _ in spans.values()) - t0,
        "after_last_sleep_s": t1 - max(e for _, e, _ in spans.values()),
        "threads_used": len(by_thread),
        "max_running": max_running,
        "task_gap_s": {
            "median": statistics.median(gaps),
            "mean": statistics.fmean(gaps),
            "p95": sorted(gaps)[int(0.95 * (len(gaps) - 1))],
            "max": max(gaps),
            "sum": sum(gaps),
        },
        "sleep_overrun_s": max(spans[n][1] - spans[n][0] - durations[n] for n in spans),
    }


# -- builds per change -------------------------------------------------------------------------

# A 20-service application: each service and the services it depends on.
APP_DEPS: dict[str, list[str]] = {
    "config": [],
    "auth": ["config"],
    "users": ["auth"],
    "catalog": ["config"],
    "inventory": ["catalog"],
    "pricing": ["catalog"],
    "payments": ["auth"],
    "cart": ["pricing", "users"],
    "orders": ["cart", "inventory", "payments"],
    "shipping": ["orders"],
    "invoices": ["orders", "payments"],
    "notifications": ["users"],
    "email": ["notifications"],
    "search": ["catalog"],
    "recommendations": ["search", "users"],
    "reviews": ["catalog", "users"],
    "analytics": ["orders", "reviews"],
    "admin": ["analytics", "inventory"],
    "gateway": ["cart", "orders", "search", "recommendations", "reviews"],
    "web": ["gateway"],
}
HEADLINE_CHANGE = "orders"


def _sh(args: list[str], cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@relay.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@relay.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(cwd),
    }
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def builds_per_change(workdir: Path) -> dict[str, Any]:
    repo = workdir / "app"
    repo.mkdir()
    paths = {name: f"services/{name}" for name in APP_DEPS}
    _sh(["init", "--quiet", "--initial-branch", "main"], repo)
    for name, path in paths.items():
        (repo / path).mkdir(parents=True)
        (repo / path / "app.py").write_text(f'SERVICE = "{name}"\nVERSION = 1\n')
    (repo / "relay.yaml").write_text("# services/<name>, see bench/fleet.py\n")
    _sh(["add", "-A"], repo)
    _sh(["commit", "--quiet", "-m", "base"], repo)
    base = _sh(["rev-parse", "HEAD"], repo)
    base_trees = {name: git.tree_hash(repo, base, path) for name, path in paths.items()}

    changes: dict[str, dict[str, Any]] = {}
    for name, path in paths.items():
        _sh(["checkout", "--quiet", "--detach", base], repo)
        (repo / path / "app.py").write_text(f'SERVICE = "{name}"\nVERSION = 2\n')
        _sh(["commit", "--quiet", "-am", f"change {name}"], repo)
        head = _sh(["rev-parse", "HEAD"], repo)
        files = git.changed_files(repo, base, head)
        touched = services_touched(paths, files)
        changed, dependents = impact(APP_DEPS, touched)
        new_trees = sorted(
            s for s, p in paths.items() if git.tree_hash(repo, head, p) != base_trees[s]
        )
        changes[name] = {
            "changed_files": files,
            "changed": changed,
            "new_tree_hashes": new_trees,
            "images_built": len(new_trees),
            "dependents_retested": dependents,
        }
        if set(new_trees) != set(changed):
            raise RuntimeError(f"{name}: tree hashes {new_trees} disagree with scope {changed}")
    built = [c["images_built"] for c in changes.values()]
    retested = [len(c["dependents_retested"]) for c in changes.values()]
    return {
        "services": len(APP_DEPS),
        "deps": APP_DEPS,
        "headline": HEADLINE_CHANGE,
        "per_change": changes,
        "images_built": {"min": min(built), "max": max(built), "mean": statistics.fmean(built)},
        "dependents_retested": {
            "min": min(retested),
            "median": statistics.median(retested),
            "max": max(retested),
            "mean": statistics.fmean(retested),
        },
        "all_services_release_builds": len(impact(APP_DEPS, set(APP_DEPS))[0]),
    }


# -- report ------------------------------------------------------------------------------------


def summarize(
    deps: Graph, durations: Mapping[str, float], runs: dict[int, list[dict[str, Any]]]
) -> dict[str, Any]:
    cp, _ = critical_path(deps, durations)
    work = sum(durations.values())
    out: dict[str, Any] = {}
    for c, rs in runs.items():
        bound = max(cp, work / c)
        greedy = greedy_list_schedule(deps, durations, c)
        pool = thread_pool_model(deps, durations, c)
        makespans = [r["makespan_s"] for r in rs]
        gap = statistics.median(r["task_gap_s"]["median"] for r in rs)
        med = statistics.median(makespans)
        out[str(c)] = {
            "lower_bound_s": bound,
            "bound_by": "critical path" if cp >= work / c else "work / C",
            "greedy_s": greedy,
            "thread_pool_model_s": pool,
            "thread_pool_model_with_gap_s": thread_pool_model(deps, durations, c, gap),
            "makespan_s": {"median": med, "min": min(makespans), "max": max(makespans)},
            "flow_call_s": {"median": statistics.median(r["flow_call_s"] for r in rs)},
            "flow_setup_s": statistics.median(r["flow_setup_s"] for r in rs),
            "flow_teardown_s": statistics.median(r["flow_teardown_s"] for r in rs),
            "makespan_over_bound": med / bound,
            "makespan_over_greedy": med / greedy,
            "makespan_over_thread_pool_model": med / pool,
            "greedy_over_bound": greedy / bound,
            "makespan_minus_bound_s": med - bound,
            "makespan_minus_bound_per_task_s": (med - bound) / len(deps),
            "makespan_minus_model_s": med - pool,
            "task_gap_median_s": gap,
            "task_gap_p95_s": statistics.median(r["task_gap_s"]["p95"] for r in rs),
            "max_running": max(r["max_running"] for r in rs),
        }
    return out


def print_table(
    deps: Graph,
    durations: Mapping[str, float],
    summary: dict[str, Any],
    builds: dict[str, Any],
    runs: int,
) -> None:
    cp, path = critical_path(deps, durations)
    work = sum(durations.values())
    depth = len(waves(deps)) - 1
    print()
    print(
        f"== fleet release: {len(deps)} services, {len(waves(deps))} waves (depth {depth}), "
        f"total work {work:.2f} s, critical path {cp:.2f} s over {len(path)} services; "
        f"median of {runs} run(s)"
    )
    cols = list(summary)
    width = 44
    print(f"{'':<{width}}" + "".join(f"{'C=' + c:>12}" for c in cols))
    rows: list[tuple[str, Any]] = [
        ("lower bound max(CP, work/C) [s]", lambda s: f"{s['lower_bound_s']:.2f}"),
        ("  bound set by", lambda s: "CP" if s["bound_by"] == "critical path" else "work/C"),
        ("greedy list schedule (sim) [s]", lambda s: f"{s['greedy_s']:.2f}"),
        ("previous submit-all scheduler (sim) [s]", lambda s: f"{s['thread_pool_model_s']:.2f}"),
        ("  same + median task gap [s]", lambda s: f"{s['thread_pool_model_with_gap_s']:.2f}"),
        ("measured makespan, median [s]", lambda s: f"{s['makespan_s']['median']:.2f}"),
        ("measured makespan, min..max [s]", lambda s: _range(s["makespan_s"])),
        ("measured whole flow call, median [s]", lambda s: f"{s['flow_call_s']['median']:.2f}"),
        ("  flow set-up / after run_over_graph [s]", lambda s: _pair(s)),
        ("makespan / lower bound (target <= 1.1)", lambda s: f"{s['makespan_over_bound']:.3f}"),
        ("makespan / greedy", lambda s: f"{s['makespan_over_greedy']:.3f}"),
        ("makespan / previous scheduler", lambda s: f"{s['makespan_over_thread_pool_model']:.3f}"),
        ("greedy / lower bound (inherent gap)", lambda s: f"{s['greedy_over_bound']:.3f}"),
        ("makespan - lower bound [s]", lambda s: f"{s['makespan_minus_bound_s']:.2f}"),
        ("  per task (/50) [ms]", lambda s: f"{s['makespan_minus_bound_per_task_s'] * 1e3:.0f}"),
        ("makespan - previous scheduler [s]", lambda s: f"{s['makespan_minus_model_s']:.2f}"),
        ("Prefect gap per task, median [ms]", lambda s: f"{s['task_gap_median_s'] * 1e3:.1f}"),
        ("Prefect gap per task, p95 [ms]", lambda s: f"{s['task_gap_p95_s'] * 1e3:.1f}"),
        ("most sleeps running at once", lambda s: f"{s['max_running']}"),
    ]
    for label, fmt in rows:
        print(f"{label:<{width}}" + "".join(f"{fmt(summary[c]):>12}" for c in cols))

    head = builds["per_change"][builds["headline"]]
    print()
    print(f"== builds per change: {builds['services']} services, one service's file changed")
    print(f"{'change to':<{width}}{builds['headline']:>12}{'all 20 (min/median/max)':>28}")
    b, d = builds["images_built"], builds["dependents_retested"]
    per = builds["per_change"].values()
    built = f"{b['min']}/{statistics.median(c['images_built'] for c in per):g}/{b['max']}"
    retested = f"{d['min']}/{d['median']:g}/{d['max']}"
    print(f"{'images built (new tree hash)':<{width}}{head['images_built']:>12}{built:>28}")
    print(
        f"{'dependents whose integration tests re-run':<{width}}"
        f"{len(head['dependents_retested']):>12}{retested:>28}"
    )
    print(f"  ({builds['headline']}: {', '.join(head['dependents_retested'])})")
    print(
        f"{'in scope of a release without a base':<{width}}"
        f"{builds['all_services_release_builds']:>12}  (before the tree-hash lookup reuses images)"
    )


def _pair(s: dict[str, Any]) -> str:
    return f"{s['flow_setup_s']:.2f}/{s['flow_teardown_s']:.2f}"


def _range(stat: dict[str, float]) -> str:
    return f"{stat['min']:.2f}..{stat['max']:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="flow runs per concurrency")
    args = parser.parse_args()
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be within 1..20")
    if not devstack.status().all_running:
        sys.exit("the local stack is not running; use `make bench` (it starts the stack)")

    started = time.monotonic()
    deps, durations = make_fleet()
    depth = len(waves(deps)) - 1
    assert depth >= 5, f"the fleet's DAG has depth {depth}, it should be at least 5"
    cp, path = critical_path(deps, durations)
    print(
        f"fleet: {len(deps)} services, waves {[len(w) for w in waves(deps)]}, "
        f"work {sum(durations.values()):.2f} s, critical path {cp:.2f} s ({' -> '.join(path)})"
    )
    runs: dict[int, list[dict[str, Any]]] = {c: [] for c in CONCURRENCIES}
    for i in range(args.runs):
        for c in CONCURRENCIES:
            run = release_run(deps, durations, c)
            runs[c].append(run)
            print(
                f"run {i + 1}/{args.runs} C={c}: makespan {run['makespan_s']:.2f} s, flow call "
                f"{run['flow_call_s']:.2f} s, task gap median "
                f"{run['task_gap_s']['median'] * 1e3:.1f} ms, max running {run['max_running']}"
            )
    with tempfile.TemporaryDirectory(prefix="relay-bench-fleet-") as tmp:
        builds = builds_per_change(Path(tmp))
    summary = summarize(deps, durations, runs)
    runtime = time.monotonic() - started
    print_table(deps, durations, summary, builds, args.runs)
    path_written = write_results(
        "fleet",
        {
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "nproc": len(os.sched_getaffinity(0)),
                "python": pyplatform.python_version(),
                "platform": pyplatform.platform(),
            },
            "config": {
                "seed": SEED,
                "layers": list(LAYERS),
                "chains": CHAINS,
                "concurrencies": list(CONCURRENCIES),
                "runs": args.runs,
            },
            "fleet": {
                "deps": deps,
                "durations": durations,
                "waves": waves(deps),
                "total_work_s": sum(durations.values()),
                "critical_path_s": cp,
                "critical_path": path,
            },
            "runs": {str(c): rs for c, rs in runs.items()},
            "summary": summary,
            "builds_per_change": builds,
            "runtime_s": runtime,
        },
    )
    print(f"\nruntime {runtime:.1f} s; results merged into {path_written} under 'fleet'")


if __name__ == "__main__":
    main()
