"""Running work over a dependency graph: each node starts as soon as its providers are done.

Not wave by wave: a consumer waits only for its own providers, so a long service does not
hold back unrelated ones. A node is submitted only once it is ready, so no worker thread sits
waiting on providers while ready work queues behind it, and among ready nodes the one with
the longest chain of consumers after it goes first (the critical path). How many run at once
is the calling flow's task runner's `max_workers` (a `ThreadPoolTaskRunner`). A failed node's
consumers never start; independent branches finish; the first failure is raised at the end.
"""

from __future__ import annotations

import queue
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from prefect import Task
from prefect.futures import PrefectFuture

from relay.graph import topological_order

R = TypeVar("R")


def chain_lengths(deps: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """For each node, how many nodes the longest chain starting at it has (itself included)."""
    consumers: dict[str, list[str]] = {name: [] for name in deps}
    for name, providers in deps.items():
        for provider in providers:
            consumers.setdefault(provider, []).append(name)
    length: dict[str, int] = {}
    for name in reversed(topological_order(deps)):
        length[name] = 1 + max((length[c] for c in consumers[name]), default=0)
    return length


def run_over_graph(
    deps: Mapping[str, Sequence[str]], work: Task[..., R], **kwargs: Any
) -> dict[str, R]:
    """Run `work(name, **kwargs)` for every node once its providers have succeeded."""
    waiting = {name: {d for d in deps[name] if d in deps} for name in deps}
    priority = chain_lengths(deps)
    finished: queue.Queue[str] = queue.Queue()
    futures: dict[str, PrefectFuture[R]] = {}
    results: dict[str, R] = {}
    failures: dict[str, BaseException] = {}

    def submit_ready() -> None:
        ready = [n for n, blockers in waiting.items() if not blockers and n not in futures]
        for name in sorted(ready, key=lambda n: (-priority[n], n)):
            futures[name] = work.submit(name, **kwargs)
            futures[name].add_done_callback(lambda _, name=name: finished.put(name))

    submit_ready()
    while len(results) + len(failures) < len(futures):
        name = finished.get()
        try:
            results[name] = futures[name].result()
        except BaseException as exc:  # kept, raised once every independent branch is done
            failures[name] = exc
            continue
        for blockers in waiting.values():
            blockers.discard(name)
        submit_ready()
    if failures:
        first = min(failures, key=list(topological_order(deps)).index)
        raise failures[first]
    return results
