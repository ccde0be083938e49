"""Reading a run's tree from the Prefect API: every flow run under some runs, level by level,
and the task runs of a set of flow runs, each read whole across pages.

Shared by the logs shipped to CloudWatch, a run's summary artifact, the command line's
progress view and the search for a paused approval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, TaskRun

PAGE = 200  # the Prefect server's default and maximum page size
T = TypeVar("T")


def paged(read: Callable[[int], list[T]]) -> list[T]:
    """All results of a paged read; `read(offset)` returns one page of at most `PAGE`."""
    found: list[T] = []
    while True:
        page = read(len(found))
        found += page
        if len(page) < PAGE:
            return found


def flow_runs_under(client: SyncPrefectClient, roots: Iterable[UUID]) -> list[tuple[int, FlowRun]]:
    """Every flow run under `roots` (not the roots), with its depth (0: a root's child): one
    read per level, however many runs it holds."""
    found: list[tuple[int, FlowRun]] = []
    seen = set(roots)
    frontier, depth = list(seen), 0
    while frontier:
        children = paged(
            lambda offset, parents=frontier: client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=parents)
                ),
                limit=PAGE,
                offset=offset,
            )
        )
        children = [run for run in children if run.id not in seen]
        seen.update(run.id for run in children)
        found += [(depth, run) for run in children]
        frontier, depth = [run.id for run in children], depth + 1
    return found


def task_runs_of(client: SyncPrefectClient, flow_run_ids: Iterable[UUID]) -> list[TaskRun]:
    ids = list(flow_run_ids)
    if not ids:
        return []
    return paged(
        lambda offset: client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
            limit=PAGE,
            offset=offset,
        )
    )
