"""Record stage: what a run did, as Prefect artifacts people read in the UI."""

from __future__ import annotations

import re
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from relay.ledger import Ledger, Record
from relay.settings import relay_database


def artifact_key(*parts: str) -> str:
    """Artifact keys allow only lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(app: str, release: dict[str, Any], subject: str, author: str) -> str:
    service, environment = release["service"], release["environment"]
    notes = release.get("notes", {})
    names = [*release["stage_seconds"], *(n for n in notes if n not in release["stage_seconds"])]
    stages = "\n".join(
        f"| {name} | {_seconds(release['stage_seconds'].get(name))} | {notes.get(name, '')} |"
        for name in names
    )
    built = "built and pushed" if release["built"] else "reused, built before from the same key"
    deployed = "switched to this image" if release["changed"] else "already serving this image"
    markdown = f"""# {service} → {environment}

| | |
|---|---|
| commit | `{release["commit"]}` — {subject} ({author}) |
| tree | `{release["tree"]}` |
| image | `{release["image"]}`: {built} |
| deploy | {deployed} |
| serves at | [{release["url"]}]({release["url"]}) |

| stage | time | note |
|---|---|---|
{stages}
"""
    create_markdown_artifact(
        key=artifact_key(app, service, environment, "summary"),
        markdown=markdown,
        description=f"{service} {release['commit'][:12]} in {environment}",
    )
    return markdown


def _publish_environments(ledger: Ledger, app: str) -> None:
    """`<app>-environments`: what runs where, as `relay status` shows it, after every attempt."""
    rows = [
        current
        for environment, service in ledger.environments(app)
        if (current := ledger.current(app, environment, service)) is not None
    ]
    create_table_artifact(
        key=artifact_key(app, "environments"),
        table=[
            {
                "environment": r.environment,
                "service": r.service,
                "digest": r.digest,
                "commit": r.commit[:12],
                "since": r.ended_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                "approver": r.approver or "",
                "strategy": r.strategy,
                "release": r.release[:12] if r.release else "",
            }
            for r in rows
        ],
        description=f"What runs where in {app}: each service's current version per environment",
    )


def _seconds(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "-"


@task(name="record-deployment", cache_policy=NO_CACHE)
def record_deployment(record: Record) -> Record:
    """Append the attempt to the ledger and show the service's recent history in the UI."""
    ledger = Ledger(relay_database())
    saved = ledger.append(record)
    recent = ledger.history(record.app, record.service, record.environment, limit=20)
    create_table_artifact(
        key=artifact_key(record.app, record.service, record.environment, "deployments"),
        table=[
            {
                "when": r.ended_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                "outcome": r.outcome.value,
                "image": r.image,
                "commit": r.commit[:12],
                "strategy": r.strategy,
                "approver": r.approver or "",
                "reason": r.reason.splitlines()[0] if r.reason else "",
            }
            for r in recent
        ],
        description=f"Deployments of {record.service} to {record.environment} (newest first)",
    )
    _publish_environments(ledger, record.app)
    get_run_logger().info(
        "ledger: %s %s in %s: %s",
        record.service,
        record.image,
        record.environment,
        record.outcome.value,
    )
    return saved
