"""One service, one commit: build it once, deploy it by digest, test it where it runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import flow
from prefect_docker import DockerHost
from pydantic import BaseModel

from flows.client import one_client_for_tasks
from flows.deploy import Attempt, deploy_lock, recorded, roll_out, verified
from relay.errors import TerminalError
from relay.manifest import Manifest
from relay.wiring import service_urls
from tasks.build import compile_service, run_unit_tests
from tasks.image import build_image, find_image, log_in_registry, push_service_image, tag_image
from tasks.logs import SHIP_LOGS
from tasks.notify import NOTIFY_ON_FAILURE, with_hooks
from tasks.record import artifact_key, publish_summary
from tasks.sast import run_sast
from tasks.scan import check_image_scan
from tasks.secrets import resolve_configs
from tasks.security import audit_image_packages, check_compliance
from tasks.source import checkout_commit, read_manifest, service_tree_hash
from tasks.test import run_integration_tests
from tasks.tracing import relay_attributes, release_id


class ServiceRelease(BaseModel):
    """What one pipeline run produced: the pinned image and where it now serves."""

    service: str
    environment: str
    commit: str
    tree: str
    image: str
    built: bool
    url: str
    changed: bool
    stage_seconds: dict[str, float]


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - started, 2)


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
    scan gates → deploy by digest → integration."""
    with one_client_for_tasks():  # the tasks share one client (flows/client.py)
        timer = _Timer()
        with timer.stage("checkout"):
            checkout = checkout_commit(repository, commit)
            manifest = read_manifest(checkout, manifest_file)
            _check_target(manifest, service, environment)
            resolve_configs(manifest, environment, [service])  # a missing secret stops here
            spec = manifest.services[service]
            directory = checkout.path / spec.path
            tree = service_tree_hash(checkout, spec.path)
            relay_attributes(
                app=manifest.app,
                service=service,
                environment=environment,
                commit=checkout.commit,
                strategy=manifest.environments[environment].strategy,
                release_id=release_id(),
            )

        registry = log_in_registry(manifest.registry)
        docker_host = DockerHost()
        repository_name = f"{manifest.app}/{service}"
        image = find_image(registry, repository_name, tree)
        built = image is None
        if image is None:
            with timer.stage("compile"):
                compile_service(service, directory, spec.build)
            with timer.stage("sast"):
                run_sast(
                    service,
                    directory,
                    spec.sast.command,
                    spec.sast.fail_on,
                    artifact_key(manifest.app, service, "sast"),
                    spec.sast.sarif,
                )
            with timer.stage("unit-tests"):
                run_unit_tests(
                    service,
                    directory,
                    spec.unit_tests,
                    artifact_key(manifest.app, service, "unit-tests"),
                )
            with timer.stage("image"):
                build_image(
                    docker_host,
                    registry,
                    repository_name,
                    service,
                    directory,
                    spec.dockerfile,
                    checkout.commit,
                    tree,
                )
                image = push_service_image(
                    docker_host, registry, repository_name, checkout.commit, tree
                )
        else:
            with timer.stage("image"):
                image = tag_image(registry, image, checkout.commit)
        relay_attributes(digest=image.digest)
        with timer.stage("compliance"):  # the security gates: before any deploy
            check_compliance(manifest, service, environment, str(image))
        with timer.stage("packages"):
            audit_image_packages(
                docker_host, manifest.security.packages, manifest.app, service, str(image)
            )
        check_image_scan(manifest.image_scan, manifest.app, service, str(image))

        attempt = Attempt(
            app=manifest.app,
            service=service,
            environment=environment,
            image=str(image),
            commit=checkout.commit,
            tree=tree,
            strategy=manifest.environments[environment].strategy,
            cloudwatch=manifest.cloudwatch,
            committed_at=checkout.committed_at,
        )
        async with deploy_lock(attempt):
            with recorded(attempt):
                with timer.stage("deploy"):
                    deployed = await roll_out(docker_host, manifest, checkout.path, attempt)
                async with verified(docker_host, manifest, [(attempt, deployed)]):
                    with timer.stage("integration-tests"):
                        run_integration_tests(
                            service,
                            directory,
                            spec.integration_tests,
                            service_urls(manifest, environment),
                            artifact_key(manifest.app, service, f"{environment}-integration-tests"),
                        )
        release = ServiceRelease(
            service=service,
            environment=environment,
            commit=checkout.commit,
            tree=tree,
            image=str(image),
            built=built,
            url=deployed.url,
            changed=deployed.changed,
            stage_seconds=timer.seconds,
        )
        publish_summary(manifest.app, release.model_dump(), checkout.subject, checkout.author)
        return release


def _check_target(manifest: Manifest, service: str, environment: str) -> None:
    manifest.check_services([service])
    manifest.check_environment(environment)
    platform = manifest.environments[environment].platform
    if platform != "docker":
        raise TerminalError(
            f"{manifest.source}: environments.{environment}.platform is {platform!r}, which this "
            "version of Relay cannot deploy to yet; use platform: docker"
        )
