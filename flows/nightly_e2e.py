"""The nightly end-to-end run: the end-to-end suite against staging, smoke checks against
production, one table of results per night, and a notification when anything failed."""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow
from prefect.artifacts import acreate_table_artifact
from prefect_docker import DockerHost

from flows.client import one_client_for_tasks
from relay.discovery import service_urls, url_variable
from relay.errors import StageFailed
from relay.ledger import Ledger
from relay.manifest import Manifest
from relay.releases import Release
from relay.settings import relay_database
from relay.stages.site import StageSite
from tasks.record import artifact_key
from tasks.source import checkout_commit, read_manifest
from tasks.support.notify import notify
from tasks.test import check_health, e2e_tests, run_smoke_tests, stage_site


@flow(name="nightly-e2e", flow_run_name="nightly-e2e-{e2e_environment}-{smoke_environment}")
async def nightly_e2e(
    repository: str,
    ref: str = "HEAD",
    e2e_environment: str = "staging",
    smoke_environment: str = "prod",
    manifest_file: str = "relay.yaml",
) -> list[dict[str, str]]:
    """Every check runs even when an earlier one failed; the run fails at the end if any did."""
    with one_client_for_tasks():  # the tasks share one client (flows/client.py)
        checkout = checkout_commit(repository, ref)
        manifest = read_manifest(checkout, manifest_file)
        rows: list[dict[str, str]] = []
        if manifest.e2e_tests:
            rows.append(
                _check(
                    "end-to-end tests",
                    e2e_environment,
                    "(all)",
                    lambda: e2e_tests(manifest, e2e_environment),
                )
            )
        urls = service_urls(manifest, smoke_environment)
        smoke = manifest.environments[smoke_environment].smoke_tests
        docker_host = DockerHost()
        made = Ledger(relay_database()).release_of_commit(manifest.app, checkout.commit)
        for name, service in manifest.services.items():
            url = urls[url_variable(name)]
            rows.append(
                _check(
                    "health",
                    smoke_environment,
                    name,
                    lambda n=name, u=url + service.health: check_health(n, u),
                )
            )
            if smoke:
                rows.append(
                    _check(
                        "smoke tests",
                        smoke_environment,
                        name,
                        lambda n=name, u=url: run_smoke_tests(
                            docker_host, n, _site(docker_host, manifest, made, n), list(smoke), u
                        ),
                    )
                )
        await acreate_table_artifact(
            key=artifact_key(manifest.app, "nightly-e2e"),
            table=rows,
            description=f"Nightly checks of {manifest.app} at {checkout.commit[:12]}",
        )
        failed = [r for r in rows if r["outcome"] != "passed"]
        if failed:
            summary = f"{len(failed)} of {len(rows)} nightly checks of {manifest.app} failed"
            notify("relay.nightly.failed", manifest.app, summary, {"failed": failed})
            raise StageFailed(
                summary + ": " + "; ".join(f"{r['check']} {r['service']}" for r in failed)
            )
        return rows


def _site(
    docker_host: DockerHost, manifest: Manifest, made: Release | None, service: str
) -> StageSite:
    """Smoke tests run in the service's stage image when this commit made a release (its
    image key finds that image); else on the worker."""
    if made is None or service not in made.services:
        return StageSite(manifest.services[service].directory(manifest.root))
    entry = made.services[service]
    return stage_site(docker_host, manifest, service, entry.key, str(entry.image))


def _check(check: str, environment: str, service: str, run: Callable[[], object]) -> dict[str, str]:
    row = {"check": check, "environment": environment, "service": service}
    try:
        run()
    except StageFailed as exc:
        return {**row, "outcome": "failed", "reason": str(exc).splitlines()[0][:300]}
    return {**row, "outcome": "passed", "reason": ""}
