"""Running work over a dependency graph: each node starts as soon as its providers are done.

Not wave by wave: a consumer waits only for its own providers, so a long service does not
hold back unrelated ones. How many run at once is the calling flow's task runner's
`max_workers` (a `ThreadPoolTaskRunner`). A failed node stops its consumers (Prefect leaves
them NotReady) while independent branches finish; the first failure is raised at the end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from prefect import Task
from prefect.futures import PrefectFuture

from relay.graph import topological_order

R = TypeVar("R")


def run_over_graph(
    deps: Mapping[str, Sequence[str]], work: Task[..., R], **kwargs: Any
) -> dict[str, R]:
    """Submit `work(name, **kwargs)` for every node, each waiting for its providers' runs."""
    futures: dict[str, PrefectFuture[R]] = {}
    for name in topological_order(deps):
        providers = [futures[d] for d in deps[name] if d in futures]
        futures[name] = work.submit(name, wait_for=providers, **kwargs)
    return {name: future.result() for name, future in futures.items()}
