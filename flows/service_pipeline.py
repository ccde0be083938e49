"""One service into one environment: deployed by digest, tested where it runs, recorded.

`deploy_service` is what a release runs for each service whose digest or settings differ from
what its first environment runs, with the image the release already holds. `service_pipeline`
is one service of one commit on its own, from source (`flows.build`) to a tested deployment:
for repairs and drills, outside any release (its records name none, so a promotion of a
release does not count it; `relay run` makes releases).
"""

from __future__ import annotations

from prefect import flow
from prefect_docker import DockerHost
from pydantic import BaseModel

from flows.build import BuiltService, build_service
from flows.client import one_client_for_tasks
from flows.deploy import Attempt, deploy_lock, recorded, roll_out, verified
from flows.spread import spread
from flows.timer import StageTimer
from relay.discovery import service_urls
from relay.manifest import Manifest
from relay.stages.plan import stage_commands
from tasks.deploy import check_cluster
from tasks.record import artifact_key, publish_summary
from tasks.secrets import resolve_configs
from tasks.service_logs import prepare_log_groups
from tasks.source import checkout_commit, read_manifest
from tasks.support.logs import SHIP_LOGS
from tasks.support.notify import NOTIFY_ON_FAILURE, with_hooks
from tasks.support.tracing import relay_attributes
from tasks.test import run_integration_tests, run_integration_tests_in_cluster, stage_site


class ServiceRelease(BaseModel):
    """What one service's run produced: the pinned image and where it now serves."""

    service: str
    environment: str
    commit: str
    tree: str
    image: str
    built: bool
    url: str
    changed: bool
    stage_seconds: dict[str, float]
    notes: dict[str, str] = {}  # per stage: where it ran, cached or not, skipped and why
    release: str = ""  # the release it belongs to, when it is in one


@flow(
    name="deploy-service",
    flow_run_name="{service}-{environment}",
    persist_result=spread(),  # a release on another worker reads it (flows/spread.py)
    **with_hooks(SHIP_LOGS, NOTIFY_ON_FAILURE),
)
async def deploy_service(
    repository: str,
    commit: str,
    service: str,
    environment: str,
    built: BuiltService,
    release: str | None = None,
    manifest_file: str = "relay.yaml",
) -> ServiceRelease:
    """Deploy `built.image` with the environment's strategy, run the service's integration
    tests against it there, and record the attempt; a failure puts the previous version back."""
    with one_client_for_tasks():  # the tasks share one client (flows/client.py)
        timer = StageTimer()
        checkout = checkout_commit(repository, commit)
        manifest = read_manifest(checkout, manifest_file)
        _check_target(manifest, service, environment)
        spec = manifest.services[service]
        relay_attributes(
            app=manifest.app,
            service=service,
            environment=environment,
            commit=checkout.commit,
            digest=built.image.digest,
            strategy=manifest.environments[environment].strategy,
            release_id=release,
        )
        docker_host = DockerHost()
        attempt = Attempt(
            app=manifest.app,
            service=service,
            environment=environment,
            image=built.image,
            commit=checkout.commit,
            tree=built.tree,
            strategy=manifest.environments[environment].strategy,
            release=release,
            cloudwatch=manifest.cloudwatch,
            committed_at=checkout.committed_at,
        )
        tests = stage_commands(spec, spec.directory(manifest.root)).integration_tests
        # On kubernetes the tests run in the cluster, as a Job of the service's image.
        in_cluster = manifest.environments[environment].platform == "kubernetes"
        smoke = manifest.environments[environment].smoke_tests
        needs_site = not in_cluster and (tests is not None or bool(smoke))
        site = (
            stage_site(docker_host, manifest, service, built.key, str(built.image))
            if needs_site
            else None
        )
        async with deploy_lock(attempt):
            with recorded(attempt):
                with timer.stage("deploy"):
                    deployed = await roll_out(docker_host, manifest, attempt, site)
                async with verified(docker_host, manifest, [(attempt, deployed)]):
                    if tests is not None and in_cluster:
                        with timer.stage("integration-tests"):
                            run_integration_tests_in_cluster(
                                manifest,
                                environment,
                                service,
                                spec.test_image or str(built.image),
                                tests,
                                artifact_key(
                                    manifest.app, service, f"{environment}-integration-tests"
                                ),
                            )
                    elif tests is not None and site is not None:
                        with timer.stage("integration-tests"):
                            run_integration_tests(
                                docker_host,
                                service,
                                site,
                                tests,
                                service_urls(manifest, environment),
                                artifact_key(
                                    manifest.app, service, f"{environment}-integration-tests"
                                ),
                            )
                    else:
                        timer.note("integration-tests", "skipped: no integration tests")
        result = ServiceRelease(
            service=service,
            environment=environment,
            commit=checkout.commit,
            tree=built.tree,
            image=str(built.image),
            built=built.built,
            url=deployed.url,
            changed=deployed.changed,
            stage_seconds={**built.stage_seconds, **timer.seconds},
            notes={**built.notes, **timer.notes},
            release=release or "",
        )
        publish_summary(manifest.app, result.model_dump(), checkout.subject, checkout.author)
        return result


@flow(
    name="service-pipeline",
    flow_run_name="{service}-{environment}",
    **with_hooks(SHIP_LOGS, NOTIFY_ON_FAILURE),
)
async def service_pipeline(
    repository: str,
    commit: str,
    service: str,
    environment: str = "dev",
    manifest_file: str = "relay.yaml",
) -> ServiceRelease:
    """Checkout → compile → SAST → unit tests → image → push → compliance, packages and image
    scan gates → deploy by digest → integration tests, for one service outside a release."""
    with one_client_for_tasks():  # the tasks share one client (flows/client.py)
        checkout = checkout_commit(repository, commit)
        manifest = read_manifest(checkout, manifest_file)
        _check_target(manifest, service, environment)
        resolve_configs(manifest, environment, [service])  # a missing secret stops here
        check_cluster(manifest, environment)
        prepare_log_groups(manifest, environment, [service])
        built = await build_service(
            repository, checkout.commit, service, environment, manifest_file
        )
        return await deploy_service(
            repository, checkout.commit, service, environment, built, None, manifest_file
        )


def _check_target(manifest: Manifest, service: str, environment: str) -> None:
    manifest.check_services([service])
    manifest.check_environment(environment)
