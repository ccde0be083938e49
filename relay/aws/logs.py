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

__all__ = [
    "LogEvent",
    "NoSuchGroup",
    "ServiceLine",
    "batches",
    "ensure_group",
    "read_group",
    "service_log_group",
    "ship",
]

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


# -- the services' own logs (the awslogs driver writes them; Relay prepares and reads) ------------

RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
)  # fmt: skip


def service_log_group(app: str, environment: str, service: str) -> str:
    """Where a service's containers log in an environment: `/<app>/<environment>/<service>`."""
    return f"/{app}/{environment}/{service}"


def ensure_group(client: Any, group: str, retention_days: int) -> None:
    """The group exists with this retention: made before anything is deployed, so that a
    group that cannot be made is an error then, not a container that cannot start.

    Raises:
        TerminalError: not allowed (what to grant).
        TransientError: CloudWatch Logs could not be reached.
    """
    _create(client.create_log_group, f"log group {group}", logGroupName=group)
    _call(
        client.put_retention_policy,
        f"setting the retention of log group {group}",
        logGroupName=group,
        retentionInDays=retention_days,
    )


class ServiceLine(TypedDict):
    event_id: str
    timestamp: int
    stream: str
    message: str


class NoSuchGroup(Exception):
    """The group does not exist (the service never logged there)."""


def read_group(
    client: Any, group: str, since_ms: int, until_ms: int | None = None, limit: int = 10_000
) -> list[ServiceLine]:
    """Every line of the group's streams from `since_ms` on, oldest first, at most `limit`.

    Raises:
        NoSuchGroup: there is no such group.
        TerminalError / TransientError: as CloudWatch Logs answered.
    """
    found: list[ServiceLine] = []
    kwargs: dict[str, Any] = {"logGroupName": group, "startTime": since_ms}
    if until_ms is not None:
        kwargs["endTime"] = until_ms
    while len(found) < limit:
        try:
            answer = client.filter_log_events(**kwargs)
        except ClientError as exc:
            if code_of(exc) == "ResourceNotFoundException":
                raise NoSuchGroup(group) from None
            raise classify(exc, f"reading log group {group}") from None
        except BotoCoreError as exc:
            raise classify(exc, f"reading log group {group}") from None
        for event in answer.get("events", []):
            found.append(
                ServiceLine(
                    event_id=str(event.get("eventId", "")),
                    timestamp=int(event["timestamp"]),
                    stream=str(event.get("logStreamName", "")),
                    message=str(event.get("message", "")),
                )
            )
        token = answer.get("nextToken")
        if not token:  # a page may be empty mid-scan: only the token says it is the end
            break
        kwargs["nextToken"] = token
    found.sort(key=lambda line: line["timestamp"])
    return found[:limit]
