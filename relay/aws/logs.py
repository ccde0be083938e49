"""Amazon CloudWatch Logs: a pipeline run's log lines where a team can search them.

Prefect keeps a run's logs in its own database; a team that lives in AWS wants them next to its
services' logs. `ship` writes one run's lines to a log group (`/relay/<service>`) and a stream
of that run's own, creating both when missing, in as many `PutLogEvents` calls as the API's
limits need. `batches` is the pure part: order, size and span rules, tested without AWS.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import suppress
from typing import Any, TypedDict

from botocore.exceptions import BotoCoreError, ClientError

from relay.aws.errors import classify, code_of

__all__ = ["LogEvent", "batches", "ship"]

# PutLogEvents limits (CloudWatch Logs quotas): events per call, bytes per call where each event
# counts its UTF-8 message plus 26 bytes, bytes per event, and the time one call may span.
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 262_144 - EVENT_OVERHEAD
MAX_BATCH_SPAN_MS = 24 * 3600 * 1000
TRUNCATED = " …[truncated]"


class LogEvent(TypedDict):
    """One line, in PutLogEvents' spelling: `timestamp` in milliseconds since the epoch."""

    timestamp: int
    message: str


def batches(events: Iterable[LogEvent]) -> list[list[LogEvent]]:
    """Split events into PutLogEvents calls the API accepts.

    Events are sorted by time (the API refuses a batch out of order; the sort is stable, so
    lines of the same millisecond keep their order), empty messages are dropped (the API
    refuses them), and a message over the per-event limit is cut, saying so. A batch ends
    before it would exceed the event count, the byte size or the 24-hour span.
    """
    ordered = sorted(
        (
            LogEvent(timestamp=e["timestamp"], message=_fit(e["message"]))
            for e in events
            if e["message"]
        ),
        key=lambda e: e["timestamp"],
    )
    result: list[list[LogEvent]] = []
    current: list[LogEvent] = []
    size = 0
    for event in ordered:
        cost = len(event["message"].encode()) + EVENT_OVERHEAD
        if current and (
            len(current) >= MAX_BATCH_EVENTS
            or size + cost > MAX_BATCH_BYTES
            or event["timestamp"] - current[0]["timestamp"] >= MAX_BATCH_SPAN_MS
        ):
            result.append(current)
            current, size = [], 0
        current.append(event)
        size += cost
    if current:
        result.append(current)
    return result


def _fit(message: str) -> str:
    """The message, cut to the per-event limit at a character boundary."""
    data = message.encode()
    if len(data) <= MAX_EVENT_BYTES:
        return message
    keep = MAX_EVENT_BYTES - len(TRUNCATED.encode())
    return data[:keep].decode(errors="ignore") + TRUNCATED


def ship(client: Any, group: str, stream: str, events: Sequence[LogEvent]) -> int:
    """Write `events` to `stream` in `group`, creating both if missing.

    Returns:
        How many events CloudWatch Logs accepted (it rejects events older than its retention
        or more than two hours ahead; those are counted out, not raised).

    Raises:
        TerminalError: Not allowed to write there (the message names the policy to grant).
        TransientError: CloudWatch Logs could not be reached or refused the call.
    """
    _create(client.create_log_group, f"log group {group}", logGroupName=group)
    _create(
        client.create_log_stream,
        f"log stream {group}:{stream}",
        logGroupName=group,
        logStreamName=stream,
    )
    accepted = 0
    for batch in batches(events):
        answer = _call(
            client.put_log_events,
            f"writing to {group}:{stream}",
            logGroupName=group,
            logStreamName=stream,
            logEvents=batch,
        )
        rejected = answer.get("rejectedLogEventsInfo") or {}
        accepted += len(batch) - _rejected_count(rejected, len(batch))
    return accepted


def _rejected_count(info: dict[str, int], size: int) -> int:
    """How many events of a batch the API turned down. In its terms, `tooOldLogEventEndIndex`
    and `expiredLogEventEndIndex` end a rejected prefix (exclusive), `tooNewLogEventStartIndex`
    starts a rejected suffix."""
    old = max(info.get("tooOldLogEventEndIndex", 0), info.get("expiredLogEventEndIndex", 0))
    new = size - info.get("tooNewLogEventStartIndex", size)
    return min(size, old + new)


def _create(method: Any, what: str, **kwargs: Any) -> None:
    with suppress(_AlreadyExists):
        _call(method, f"creating {what}", **kwargs)


class _AlreadyExists(Exception):
    """The group or stream is there already: what `ship` wanted."""


def _call(method: Any, doing: str, **kwargs: Any) -> Any:
    try:
        return method(**kwargs)
    except ClientError as exc:
        if code_of(exc) == "ResourceAlreadyExistsException":
            raise _AlreadyExists(doing) from None
        raise classify(exc, doing) from None
    except BotoCoreError as exc:
        raise classify(exc, doing) from None
