"""Running work over a dependency graph: each node starts as soon as its providers are done.

Not wave by wave: a consumer waits only for its own providers, so a long service does not
hold back unrelated ones. A node is submitted only once it is ready, so no worker thread sits
waiting on providers while ready work queues behind it, and among ready nodes the one with
the longest chain of consumers after it goes first (the critical path). How many run at once
is the calling flow's task runner's `max_workers` (a `ThreadPoolTaskRunner`). A failed node's
consumers never start; independent branches finish; the first failure is raised at the end.
A cancelled run (`tasks.support.cancellation`) starts no more nodes.
`settle_over_graph` hands back what succeeded next to what failed, for a caller that must undo
the successes (a promotion's train), and can stop starting new nodes after the first failure.
"""

from __future__ import annotations

import queue
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prefect import Task
from prefect.futures import PrefectFuture

from relay.errors import Cancelled
from relay.graph import chain_lengths, topological_order
from tasks.support.cancellation import raise_if_cancelled

R = TypeVar("R")


@dataclass
class GraphRun(Generic[R]):
    """What a run over a graph did: each started node's result or failure."""

    order: list[str]
    results: dict[str, R] = field(default_factory=dict)
    failures: dict[str, BaseException] = field(default_factory=dict)

    def raise_first(self) -> None:
        """The failure of the node earliest in dependency order, if any failed."""
        if self.failures:
            raise self.failures[min(self.failures, key=self.order.index)]


def run_over_graph(
    deps: Mapping[str, Sequence[str]], work: Task[..., R], **kwargs: Any
) -> dict[str, R]:
    """Run `work(name, **kwargs)` for every node once its providers have succeeded."""
    run = settle_over_graph(deps, work, **kwargs)
    run.raise_first()
    return run.results


def settle_over_graph(
    deps: Mapping[str, Sequence[str]],
    work: Task[..., R],
    *,
    stop_on_failure: bool = False,
    **kwargs: Any,
) -> GraphRun[R]:
    """As `run_over_graph`, without raising; with `stop_on_failure`, no node starts after the
    first failure (the ones running finish)."""
    waiting = {name: {d for d in deps[name] if d in deps} for name in deps}
    priority = chain_lengths(deps)
    finished: queue.Queue[str] = queue.Queue()
    futures: dict[str, PrefectFuture[R]] = {}
    run: GraphRun[R] = GraphRun(order=list(topological_order(deps)))
    stopped: list[Cancelled] = []  # a cancelled run starts nothing more

    def submit_ready() -> None:
        if (stop_on_failure and run.failures) or stopped:
            return
        ready = [n for n, blockers in waiting.items() if not blockers and n not in futures]
        if ready:
            try:
                raise_if_cancelled()
            except Cancelled as exc:
                stopped.append(exc)
                return
        for name in sorted(ready, key=lambda n: (-priority[n], n)):
            futures[name] = work.submit(name, **kwargs)
            futures[name].add_done_callback(lambda _, name=name: finished.put(name))

    submit_ready()
    while len(run.results) + len(run.failures) < len(futures):
        name = finished.get()
        try:
            run.results[name] = futures[name].result()
        except BaseException as exc:  # kept, raised once every independent branch is done
            run.failures[name] = exc
            continue
        for blockers in waiting.values():
            blockers.discard(name)
        submit_ready()
    if stopped:
        run.failures.update({name: stopped[0] for name in run.order if name not in futures})
    return run
