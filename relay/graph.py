"""The service dependency graph: cycles, build/deploy order, waves and change impact.

A graph is a mapping from each service to the services it depends on (its providers), exactly
as `depends_on` is written in `relay.yaml`:

    {"gateway": ["orders"], "orders": ["inventory", "payments"], "inventory": [], "payments": []}

Only the mapping's keys are nodes: an edge to a name that is not a key is ignored here (the
manifest reports it as an unknown service). Every function is pure and deterministic.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

__all__ = [
    "chain_lengths",
    "dependents",
    "find_cycles",
    "restricted",
    "topological_order",
    "waves",
]

Graph = Mapping[str, Sequence[str]]

_ON_PATH = 1
_DONE = 2


def _providers(deps: Graph, name: str) -> list[str]:
    """The known providers of `name`, each once, in the order they are listed."""
    return list(dict.fromkeys(dep for dep in deps[name] if dep in deps))


def find_cycles(deps: Graph) -> list[list[str]]:
    """Every dependency cycle met by a depth-first walk, e.g. `[["orders", "inventory", "orders"]]`.

    Each cycle lists its services in dependency order with the first repeated at the end; a
    service that depends on itself is `["a", "a"]`. The walk follows the mapping's order and
    each `depends_on` list's order, so cycles come out as they read in the manifest. One cycle
    is reported per back edge: breaking each reported cycle makes the graph acyclic.
    """
    state: dict[str, int] = {}
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(name: str) -> None:
        state[name] = _ON_PATH
        path.append(name)
        for provider in _providers(deps, name):
            if state.get(provider) == _ON_PATH:
                cycles.append([*path[path.index(provider) :], provider])
            elif provider not in state:
                visit(provider)
        path.pop()
        state[name] = _DONE

    for name in deps:
        if name not in state:
            visit(name)
    return cycles


def _raise_cycle(deps: Graph) -> None:
    cycle = find_cycles(deps)[0]
    raise ValueError(f"dependency cycle {' -> '.join(cycle)}; the services cannot be ordered")


def topological_order(deps: Graph) -> list[str]:
    """Every service after the services it depends on; ties are broken alphabetically.

    Raises:
        ValueError: The graph has a cycle (named in the message).
    """
    waiting = {name: len(_providers(deps, name)) for name in deps}
    consumers = _consumers(deps)
    ready = [name for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for consumer in consumers[name]:
            waiting[consumer] -= 1
            if waiting[consumer] == 0:
                heapq.heappush(ready, consumer)
    if len(order) < len(waiting):
        _raise_cycle(deps)
    return order


def waves(deps: Graph) -> list[list[str]]:
    """Services grouped so that each group needs only earlier groups; each group sorted.

    Wave 0 holds the services with no dependencies; wave n the services whose dependencies are
    all in waves before n. Services of one wave can be built or deployed in parallel.

    Raises:
        ValueError: The graph has a cycle (named in the message).
    """
    placed: set[str] = set()
    result: list[list[str]] = []
    remaining = list(deps)
    while remaining:
        wave = sorted(n for n in remaining if all(p in placed for p in _providers(deps, n)))
        if not wave:
            _raise_cycle(deps)
        result.append(wave)
        placed.update(wave)
        remaining = [name for name in remaining if name not in placed]
    return result


def _consumers(deps: Graph) -> dict[str, list[str]]:
    """The reverse graph: for each service, the services that depend on it."""
    consumers: dict[str, list[str]] = {name: [] for name in deps}
    for name in deps:
        for provider in _providers(deps, name):
            consumers[provider].append(name)
    return consumers


def chain_lengths(deps: Graph) -> dict[str, int]:
    """For each node, how many nodes the longest chain of consumers starting at it has (itself
    included): the order a scheduler starts ready work in, critical path first."""
    consumers = _consumers(deps)
    length: dict[str, int] = {}
    for name in reversed(topological_order(deps)):
        length[name] = 1 + max((length[c] for c in consumers[name]), default=0)
    return length


def dependents(deps: Graph, name: str) -> set[str]:
    """The services that depend on `name`, directly or through others; never `name` itself.

    These are the services a change to `name` can affect. An unknown `name` has none.
    """
    if name not in deps:
        return set()
    consumers = _consumers(deps)
    found: set[str] = set()
    todo = [name]
    while todo:
        for consumer in consumers[todo.pop()]:
            if consumer not in found:
                found.add(consumer)
                todo.append(consumer)
    found.discard(name)
    return found


def services_touched(paths: Mapping[str, str], changed_files: Sequence[str]) -> set[str]:
    """The services whose directory (`paths`: service → path, relative to the repository root)
    contains at least one of `changed_files`."""
    touched = set()
    for service, path in paths.items():
        prefix = path.strip("/") + "/"
        if any(f == path.strip("/") or f.startswith(prefix) for f in changed_files):
            touched.add(service)
    return touched


def restricted(deps: Graph, keep: Sequence[str]) -> dict[str, list[str]]:
    """The graph over `keep` only, each node depending on the nearest kept nodes it reaches
    through the others: gateway -> orders -> inventory restricted to {gateway, inventory} keeps
    gateway -> inventory, so a provider still goes before a consumer that reaches it through a
    service that is not part of this deployment."""
    kept = set(keep)
    result: dict[str, list[str]] = {}
    for name in keep:
        found: list[str] = []
        seen: set[str] = set()
        todo = list(_providers(deps, name)) if name in deps else []
        while todo:
            provider = todo.pop(0)
            if provider in seen:
                continue
            seen.add(provider)
            if provider in kept:
                found.append(provider)
            else:
                todo.extend(_providers(deps, provider))
        result[name] = found
    return result


def impact(deps: Mapping[str, Sequence[str]], changed: set[str]) -> tuple[list[str], list[str]]:
    """(changed services, their transitive dependents that did not change), each in
    dependency order: the first need building and deploying, the second only their
    integration tests re-run against the new providers."""
    order = topological_order(deps)
    consumers: set[str] = set()
    for name in changed:
        consumers |= dependents(deps, name)
    return [s for s in order if s in changed], [s for s in order if s in consumers - changed]
