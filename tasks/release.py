"""Release stage: a release remembered in the ledger and shown in the Prefect UI, and the moment
it starts serving an environment as a whole."""

from __future__ import annotations

from prefect import runtime, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from relay.errors import TerminalError
from relay.ledger import Ledger
from relay.releases import Release, Via
from relay.settings import ledger_path
from tasks.record import artifact_key
from tasks.support.retry import on_transient

LEDGER_RETRIES = on_transient(2, 1)


@task(name="record-release", cache_policy=NO_CACHE, **LEDGER_RETRIES)
def record_release(release: Release, repository: str, built: dict[str, bool]) -> Release:
    """Store the release (the same content from another commit keeps its id) and publish its
    table: per service the digest, the commit its image was built from, built or reused."""
    Ledger(ledger_path()).add_release(release, repository)
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
    Ledger(ledger_path()).arrive(release.app, environment, release.id, via, run)
    get_run_logger().info("release %s serves %s", release.short_id, environment)


@task(name="find-release", cache_policy=NO_CACHE, **LEDGER_RETRIES)
def find_release(app: str, commit: str, release: str | None) -> Release:
    """The release named (an id prefix or alias), else the one `commit` made."""
    ledger = Ledger(ledger_path())
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
