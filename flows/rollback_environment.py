"""Environment rollback: a whole environment back to the release that served it before, now.

Only the services whose digest or settings differ from that release are deployed, consumers
before providers: an old consumer works with either version of its provider, while a new
consumer may need what only the new provider offers. Each goes the fast way (rolling: no smoke
tests, no analysis), as a one-service rollback does. The release's own commit gives the
settings it ran with. Rolling back again is refused: it would bring back what was rolled back.
"""

from __future__ import annotations

from prefect import flow
from prefect_docker import DockerHost

from flows.client import one_client_for_tasks
from flows.deploy import differing, put_in, record_unchanged, release_attempt
from relay.graph import topological_order
from relay.ledger import Ledger
from relay.manifest import Manifest
from relay.platforms.docker import DeployResult
from relay.releases import Release, Via
from relay.rollbacks import previous_release
from relay.settings import relay_database
from tasks.release import record_arrival
from tasks.source import checkout_commit, read_manifest
from tasks.support.logs import SHIP_LOGS
from tasks.support.notify import NOTIFY_ON_FAILURE, with_hooks


@flow(
    name="rollback-environment",
    flow_run_name="rollback-{environment}",
    **with_hooks(SHIP_LOGS, NOTIFY_ON_FAILURE),
)
async def rollback_environment(
    repository: str, environment: str, ref: str = "HEAD", manifest_file: str = "relay.yaml"
) -> list[DeployResult]:
    """Put `environment` back to its previous release; returns what was deployed."""
    with one_client_for_tasks():  # the tasks share one client (flows/client.py)
        manifest = read_manifest(checkout_commit(repository, ref), manifest_file)
        manifest.check_environment(environment)
        ledger = Ledger(relay_database())
        target = previous_release(ledger.arrivals(manifest.app, environment), environment)
        made = ledger.find_release(manifest.app, target.release)
        then = read_manifest(checkout_commit(repository, made.commit), manifest_file)
        return await _back_to(DockerHost(), then, made, environment)


async def _back_to(
    docker_host: DockerHost, manifest: Manifest, made: Release, environment: str
) -> list[DeployResult]:
    order = [s for s in topological_order(manifest.dependency_graph()) if s in made.services]
    changed = differing(docker_host, manifest, made, environment, order)
    comment = f"environment rollback to release {made.short_id} ({made.alias})"
    attempts = {
        s: release_attempt(manifest, made, environment, s, strategy="rollback", comment=comment)
        for s in order
    }
    results = [await put_in(docker_host, manifest, attempts[s]) for s in reversed(changed)]
    record_unchanged([attempts[s] for s in order if s not in changed])
    record_arrival(made, environment, Via.ROLLBACK)
    return results
