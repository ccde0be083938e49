"""One service of one commit, built once: its image found by key, or compiled, analysed, tested,
built and pushed; then the security gates every image passes before any deployment."""

from __future__ import annotations

from prefect import flow
from prefect_docker import DockerHost
from pydantic import BaseModel

from flows.client import one_client_for_tasks
from flows.timer import StageTimer
from relay.registry import ImageRef
from tasks.build import compile_service, run_unit_tests
from tasks.image import (
    build_image,
    find_image,
    find_image_key,
    image_origin,
    log_in_registry,
    push_service_image,
    tag_image,
)
from tasks.record import artifact_key
from tasks.sast import run_sast
from tasks.scan import check_image_scan
from tasks.security import audit_image_packages, check_compliance
from tasks.source import checkout_commit, read_manifest, service_tree_hash
from tasks.tracing import relay_attributes


class BuiltService(BaseModel):
    """A service's image for a commit: built now, or reused because its key was built before."""

    service: str
    image: ImageRef
    commit: str  # the commit the image was built from (an earlier one when reused)
    tree: str
    key: str
    built: bool
    stage_seconds: dict[str, float]


@flow(name="build", flow_run_name="build-{service}")
async def build_service(
    repository: str,
    commit: str,
    service: str,
    environment: str = "dev",
    manifest_file: str = "relay.yaml",
) -> BuiltService:
    """Checkout → image key → (reused, or compile → SAST → unit tests → image → push) →
    compliance (for `environment`, where it goes first), packages and image scan gates."""
    with one_client_for_tasks():  # the tasks share one client (flows/client.py)
        timer = StageTimer()
        with timer.stage("checkout"):
            checkout = checkout_commit(repository, commit)
            manifest = read_manifest(checkout, manifest_file)
            spec = manifest.services[service]
            directory = spec.directory(manifest.root)
            tree = service_tree_hash(checkout, str(directory.relative_to(checkout.path)))
        relay_attributes(app=manifest.app, service=service, commit=checkout.commit)
        registry = log_in_registry(manifest.registry)
        docker_host = DockerHost()
        repository_name = f"{manifest.app}/{service}"
        key = find_image_key(docker_host, directory, spec.dockerfile, tree, spec.build_args)
        image = find_image(registry, repository_name, key)
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
                    key,
                    spec.build_args,
                )
                image = push_service_image(
                    docker_host, registry, repository_name, checkout.commit, key
                )
            origin = checkout.commit
        else:
            with timer.stage("image"):
                image = tag_image(registry, image, checkout.commit)
                origin = image_origin(registry, image) or checkout.commit
        relay_attributes(digest=image.digest)
        with timer.stage("compliance"):  # the security gates: before any deploy
            check_compliance(manifest, service, environment, str(image))
        with timer.stage("packages"):
            audit_image_packages(
                docker_host, manifest.security.packages, manifest.app, service, str(image)
            )
        check_image_scan(manifest.image_scan, manifest.app, service, str(image))
        return BuiltService(
            service=service,
            image=image,
            commit=origin,
            tree=tree,
            key=key,
            built=built,
            stage_seconds=timer.seconds,
        )
