"""Relay's flow form: async flows whose sync tasks share the flow run's one Prefect client."""

from __future__ import annotations

import asyncio

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client

from flows.client import one_client_for_tasks

pytestmark = pytest.mark.stack


SEEN: list[object] = []  # the clients themselves, kept alive so no id is reused


@task(cache_policy=NO_CACHE)
def note_client() -> None:
    SEEN.append(get_client(sync_client=True))


@flow
async def relay_form(label: str) -> None:
    with one_client_for_tasks():
        for _ in range(3):
            note_client()


@flow
async def without_sharing() -> None:
    for _ in range(3):
        note_client()


def distinct(clients: list[object]) -> int:
    return len({id(c) for c in clients})


def test_the_tasks_of_a_flow_run_use_one_client() -> None:
    SEEN.clear()
    asyncio.run(relay_form("x"))
    assert len(SEEN) == 3 and distinct(SEEN) == 1


def test_without_it_each_sync_task_opens_its_own() -> None:
    """What `one_client_for_tasks` is for (see flows/client.py): if Prefect ever shares one
    by itself, it can go."""
    SEEN.clear()
    asyncio.run(without_sharing())
    assert len(SEEN) == 3 and distinct(SEEN) == 3


def test_relay_flows_are_async_with_their_parameters_and_docstrings() -> None:
    from flows.release import release

    assert release.isasync
    assert list(release.parameters.properties) == [
        "repository", "commit", "services", "through", "base", "manifest_file",
    ]  # fmt: skip
    assert release.description and release.description.startswith("Release `commit`")
