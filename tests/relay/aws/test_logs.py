"""relay.aws.logs: batching within PutLogEvents' limits (pure), shipping to the stack's moto server
over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from relay.aws.logs import (
    EVENT_OVERHEAD,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_BATCH_SPAN_MS,
    MAX_EVENT_BYTES,
    LogEvent,
    batches,
    ship,
)

HOUR_MS = 3600 * 1000


def events(*pairs: tuple[int, str]) -> list[LogEvent]:
    return [LogEvent(timestamp=t, message=m) for t, m in pairs]


def test_batches_are_in_time_order_and_keep_the_order_of_equal_times() -> None:
    [batch] = batches(events((3, "c"), (1, "a1"), (2, "b"), (1, "a2")))
    assert [e["message"] for e in batch] == ["a1", "a2", "b", "c"]


def test_empty_lines_are_dropped_and_no_lines_make_no_batch() -> None:
    assert batches(events((1, ""), (2, "x"))) == [events((2, "x"))]
    assert batches([]) == []


def test_a_batch_ends_at_the_event_count_limit() -> None:
    sizes = [len(b) for b in batches(events(*((i, "x") for i in range(MAX_BATCH_EVENTS + 5))))]
    assert sizes == [MAX_BATCH_EVENTS, 5]


def test_a_batch_ends_before_the_byte_limit() -> None:
    line = "y" * 100_000
    result = batches(events(*((i, line) for i in range(25))))
    for batch in result:
        assert sum(len(e["message"]) + EVENT_OVERHEAD for e in batch) <= MAX_BATCH_BYTES
    assert [len(b) for b in result] == [10, 10, 5]


def test_a_batch_spans_less_than_a_day() -> None:
    result = batches(
        events((0, "a"), (HOUR_MS, "b"), (MAX_BATCH_SPAN_MS, "c"), (25 * HOUR_MS, "d"))
    )
    assert [[e["message"] for e in b] for b in result] == [["a", "b"], ["c", "d"]]


def test_an_oversized_line_is_cut_and_says_so() -> None:
    [[event]] = batches(events((1, "é" * MAX_EVENT_BYTES)))
    assert len(event["message"].encode()) <= MAX_EVENT_BYTES
    assert event["message"].endswith("[truncated]")


# --- against moto over HTTP --------------------------------------------------------------------


@pytest.fixture
def logs() -> Iterator[tuple[Any, str]]:
    client = boto3.client("logs")
    group = f"/relay-test/{uuid.uuid4().hex[:8]}"
    yield client, group
    client.delete_log_group(logGroupName=group)


@pytest.mark.stack
def test_ship_creates_group_and_stream_and_lines_are_searchable(logs: tuple[Any, str]) -> None:
    client, group = logs
    now = int(time.time() * 1000)
    first = events((now + 2, "INFO [deploy] canary at 10%"), (now, "INFO [checkout] cloned"))
    assert ship(client, group, "orders-dev/run-1", first) == 2
    # again into the same stream and group: both exist now, which is fine
    assert (
        ship(client, group, "orders-dev/run-1", events((now + 5, "ERROR [deploy] rolled back")))
        == 1
    )
    assert ship(client, group, "orders-dev/run-2", events((now + 9, "INFO [checkout] cloned"))) == 1

    found = client.filter_log_events(logGroupName=group, filterPattern="cloned")["events"]
    assert sorted(e["logStreamName"] for e in found) == ["orders-dev/run-1", "orders-dev/run-2"]
    run_1 = client.get_log_events(logGroupName=group, logStreamName="orders-dev/run-1")["events"]
    assert [e["message"] for e in run_1] == [
        "INFO [checkout] cloned",
        "INFO [deploy] canary at 10%",
        "ERROR [deploy] rolled back",
    ]
