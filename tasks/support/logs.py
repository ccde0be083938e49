"""Pipeline logs to CloudWatch Logs: a flow run state hook that copies a finished run's log lines
from the Prefect API to `<log_group_prefix>/<service>`, one stream per run.

Attach `SHIP_LOGS` to a flow (`@flow(**SHIP_LOGS)`): it runs when the run completes, fails or
crashes. The flow's parameters say which services it concerns (`service`, or `services`, or
every service of the manifest) and where its manifest is (`repository`, `commit`/`ref`,
`manifest_file`); the manifest's `cloudwatch` settings say whether and where to write. The
lines are the run's own, its task runs' and those of its subflows (a strategy, an approval),
read after the run's log handler has flushed, so they are what the Prefect UI shows.

A hook cannot change the run's outcome, and this one never tries: any problem is a warning.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, Log, State
from prefect.client.schemas.sorting import LogSort
from prefect.logging.handlers import APILogHandler
from prefect.logging.loggers import flow_run_logger

from blocks.aws import aws_client
from relay import git
from relay.aws.logs import LogEvent, ship
from relay.manifest import CloudWatch, Manifest, load_manifest
from relay.redaction import redact
from relay.settings import workdir
from tasks.support.runs import PAGE, flow_runs_under, paged, task_runs_of

_STREAM_UNSAFE = re.compile(r"[:*]")  # not allowed in a log stream name


async def ship_run_logs(flow: Any, flow_run: FlowRun, state: State[Any]) -> None:
    """Flow run state hook: ship this run's logs to CloudWatch Logs; never raises.

    Async because the flows are: in an async flow's hook, `APILogHandler().flush()` only
    starts sending and returns, and the lines that explain a failure (logged just before the
    state changes) would be missing; `aflush` waits until they are on the server."""
    logger = flow_run_logger(flow_run, flow)
    try:
        await APILogHandler.aflush()  # the run's last lines are still queued for the API
        shipped = _ship(flow_run)
    except Exception as exc:  # noqa: BLE001 - a hook must not fail the run it reports on
        logger.warning("the run's logs were not shipped to CloudWatch Logs: %s", exc)
        return
    for group, stream, count in shipped:
        logger.info("shipped %s log lines to CloudWatch Logs %s, stream %s", count, group, stream)


SHIP_LOGS: dict[str, Any] = {
    "on_completion": [ship_run_logs],
    "on_failure": [ship_run_logs],
    "on_crashed": [ship_run_logs],
}


def _ship(flow_run: FlowRun) -> list[tuple[str, str, int]]:
    parameters = flow_run.parameters
    manifest = _manifest(parameters)
    settings = manifest.cloudwatch if manifest is not None else CloudWatch()
    if not settings.logs:
        return []
    services = _services(parameters, manifest)
    if not services:
        raise ValueError("the run names no service and its manifest could not be read")
    with get_client(sync_client=True) as client:
        events = _events(client, flow_run.id)
    stream = _STREAM_UNSAFE.sub("-", f"{flow_run.name}/{flow_run.id}")
    logs = aws_client("logs")
    shipped = []
    for service in services:
        group = f"{settings.log_group_prefix}/{service}"
        shipped.append((group, stream, ship(logs, group, stream, events)))
    return shipped


def _manifest(parameters: dict[str, Any]) -> Manifest | None:
    """The manifest of the run's checkout, when the run got as far as making one."""
    repository = parameters.get("repository")
    ref = parameters.get("commit") or parameters.get("ref") or "HEAD"
    if not repository:
        return None
    try:
        sha = git.resolve_commit(str(repository), str(ref))
    except Exception:  # noqa: BLE001 - the run may have failed on exactly this
        return None
    path = workdir(str(repository), sha) / str(parameters.get("manifest_file") or "relay.yaml")
    if not Path(path).is_file():
        return None
    try:
        return load_manifest(path)
    except Exception:  # noqa: BLE001 - an invalid manifest: its error is in the logs shipped
        return None


def _services(parameters: dict[str, Any], manifest: Manifest | None) -> list[str]:
    if parameters.get("service"):
        return [str(parameters["service"])]
    if parameters.get("services"):
        return [str(s) for s in parameters["services"]]
    return list(manifest.services) if manifest is not None else []


def _events(client: SyncPrefectClient, flow_run_id: UUID) -> list[LogEvent]:
    """Every log line of the run, its task runs and its subflows (at any depth), oldest first,
    each as `LEVEL [run name] message`."""
    names = _run_names(client, flow_run_id)
    lines: list[Log] = paged(
        lambda offset: client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=list(names))),
            limit=PAGE,
            offset=offset,
            sort=LogSort.TIMESTAMP_ASC,
        )
    )
    task_names = _task_run_names(client, list(names))
    return [
        LogEvent(
            timestamp=int(line.timestamp.timestamp() * 1000),
            message=redact(
                f"{logging.getLevelName(line.level)} "
                f"[{task_names.get(line.task_run_id) or names.get(line.flow_run_id) or '?'}] "
                f"{line.message}"
            ),
        )
        for line in lines
    ]


def _run_names(client: SyncPrefectClient, root: UUID) -> dict[UUID | None, str]:
    """The run and its subflows, by id: the ids whose logs to read, the names to show."""
    first = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[root])))
    names: dict[UUID | None, str] = {run.id: run.name for run in first}
    names.update({run.id: run.name for _, run in flow_runs_under(client, [root])})
    return names


def _task_run_names(
    client: SyncPrefectClient, flow_run_ids: list[UUID | None]
) -> dict[UUID | None, str]:
    runs = task_runs_of(client, [i for i in flow_run_ids if i is not None])
    return {run.id: run.name for run in runs}
