"""Release stage: a release remembered in the ledger and shown in the Prefect UI, and the moment
it starts serving an environment as a whole."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import runtime, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.objects import FlowRun, State
from prefect.logging import get_logger, get_run_logger
from prefect.settings import PREFECT_UI_URL

from relay.errors import TerminalError
from relay.ledger import Ledger
from relay.releases import Release, Via
from relay.settings import relay_database
from tasks.record import artifact_key
from tasks.support.retry import on_transient
from tasks.support.runs import flow_runs_under, task_runs_of

LEDGER_RETRIES = on_transient(2, 1)


@task(name="record-release", cache_policy=NO_CACHE, **LEDGER_RETRIES)
def record_release(release: Release, repository: str, built: dict[str, bool]) -> Release:
    """Store the release (the same content from another commit keeps its id) and publish its
    table: per service the digest, the commit its image was built from, built or reused."""
    Ledger(relay_database()).add_release(release, repository)
    create_table_artifact(
        key=artifact_key(release.app, "release", release.short_id),
        table=[
            {
                "service": name,
                "digest": entry.image.short,
                "built from": entry.commit[:12],
                "image": "built" if built.get(name) else "reused",
                "key": entry.key[:12],
            }
            for name, entry in sorted(release.services.items())
        ],
        description=(
            f"Release {release.short_id} ({release.alias}) of {release.app}, "
            f"commit {release.commit[:12]}"
        ),
    )
    get_run_logger().info(
        "release %s (%s): %s",
        release.short_id,
        release.alias,
        ", ".join(f"{n} {e.image.short}" for n, e in sorted(release.services.items())),
    )
    return release


@task(name="record-arrival", cache_policy=NO_CACHE, **LEDGER_RETRIES)
def record_arrival(release: Release, environment: str, via: Via) -> None:
    """`release` now serves `environment` as a whole: what `relay releases` and an environment
    rollback read."""
    run = str(runtime.flow_run.id) if runtime.flow_run.id else None
    Ledger(relay_database()).arrive(release.app, environment, release.id, via, run)
    get_run_logger().info("release %s serves %s", release.short_id, environment)


@task(name="find-release", cache_policy=NO_CACHE, **LEDGER_RETRIES)
def find_release(app: str, commit: str, release: str | None) -> Release:
    """The release named (an id prefix or alias), else the one `commit` made."""
    ledger = Ledger(relay_database())
    if release:
        return ledger.find_release(app, release)
    found = ledger.release_of_commit(app, commit)
    if found is None:
        raise TerminalError(
            f"no release was made for commit {commit[:12]} of {app}; run the release flow for "
            f"it first (`relay run --ref {commit[:12]}`), or name a release with --release "
            "(`relay releases` lists them)"
        )
    return found


def summarize_run(flow: Any, flow_run: FlowRun, state: State) -> None:
    """A flow hook: a markdown artifact on the run (and the newest version of
    `<app>-release-run`) listing every run under it, each service's build, deployment,
    promotion, canary and approval, with its state and a link, however the run ended. The
    title comes from the run's `relay.*` labels (`tasks.support.labels`).

    Only a view: it never changes the run's outcome."""
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run.id)  # with the labels set while it ran
            app, title = _title(flow.name, run, state)
            client.create_artifact(
                ArtifactCreate(
                    key=artifact_key(app, f"{flow.name}-run") if app else None,
                    type="markdown",
                    data=_summary(title, _descendants(client, run.id)),
                    description=title,
                    flow_run_id=run.id,
                )
            )
    except Exception as exc:  # noqa: BLE001 - the summary must not hide the run's own outcome
        get_logger("relay").warning("no run summary: %s", exc)


def _title(flow: str, run: FlowRun, state: State) -> tuple[str | None, str]:
    """`release 5a20adff5636 of shop at 1a2b3c4d5e6f: Completed`, as far as the labels tell."""
    labels = run.labels
    app = labels.get("relay.app")
    parts = [
        f"{flow} {labels['relay.release'][:12]}" if "relay.release" in labels else flow,
        f"of {app}" if app else "",
        f"at {labels['relay.commit'][:12]}" if "relay.commit" in labels else "",
    ]
    return app, f"{' '.join(p for p in parts if p)} ({run.name}): {state.name}"


RUN_SUMMARY = {
    "on_completion": [summarize_run],
    "on_failure": [summarize_run],
    "on_cancellation": [summarize_run],
}


def _descendants(client: SyncPrefectClient, root: UUID) -> list[tuple[int, FlowRun]]:
    """Every flow run under `root` with its depth, each followed by its own, siblings in the
    order they started (their names say the service and environment): one read per level and
    one for the task runs that link a subflow to its parent."""
    found = [run for _, run in flow_runs_under(client, [root])]
    owner = {t.id: t.flow_run_id for t in task_runs_of(client, [root, *(r.id for r in found)])}
    children: dict[UUID | None, list[FlowRun]] = {}
    for run in sorted(found, key=lambda r: str(r.start_time or r.created)):
        children.setdefault(owner.get(run.parent_task_run_id), []).append(run)

    def walk(parent: UUID, depth: int) -> list[tuple[int, FlowRun]]:
        return [
            item
            for run in children.get(parent, [])
            for item in [(depth, run), *walk(run.id, depth + 1)]
        ]

    ordered = walk(root, 0)
    placed = {run.id for _, run in ordered}
    return ordered + [(0, run) for run in found if run.id not in placed]  # parent not seen


def _summary(title: str, runs: list[tuple[int, FlowRun]]) -> str:
    ui = PREFECT_UI_URL.value()
    lines = [f"## {title}", "", "| run | state | time |", "|---|---|---|"]
    for depth, run in runs:
        indent = "&nbsp;&nbsp;" * depth
        took = f"{run.total_run_time.total_seconds():.0f} s" if run.total_run_time else ""
        lines.append(
            f"| {indent}[{run.name}]({ui}/runs/flow-run/{run.id}) | {run.state_name} | {took} |"
        )
    if not runs:
        lines.append("| (no run under this one) | | |")
    return "\n".join(lines)
