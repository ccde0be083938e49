"""One service of one commit, built once: its image found by key, or built, then compiled,
analysed and unit-tested in its stage image (`tasks.stages`) and pushed; then the security gates
every image passes before any deployment."""

from __future__ import annotations

from prefect import flow
from prefect_docker import DockerHost
from pydantic import BaseModel

from blocks import ContainerRegistry
from flows.client import one_client_for_tasks
from flows.spread import spread
from flows.timer import StageTimer
from relay.manifest import Manifest
from relay.registry import ImageRef
from relay.stages import StageImage
from relay.stages.plan import stage_commands
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
from tasks.source import Checkout, checkout_commit, read_manifest, service_tree_hash
from tasks.stages import (
    compile_service,
    prepare_stage_image,
    run_unit_tests,
    sast_site,
    site_of,
)
from tasks.support.logs import SHIP_LOGS
from tasks.support.tracing import relay_attributes


class BuiltService(BaseModel):
    """A service's image for a commit: built now, or reused because its key was built before."""

    service: str
    image: ImageRef
    commit: str  # the commit the image was built from (an earlier one when reused)
    tree: str
    key: str
    built: bool
    stage_seconds: dict[str, float]
    notes: dict[str, str] = {}  # per stage: where it ran, cached or not, skipped and why


@flow(
    name="build",
    flow_run_name="build-{service}",
    persist_result=spread(),  # a release on another worker reads it (flows/spread.py)
    **SHIP_LOGS,
)
async def build_service(
    repository: str,
    commit: str,
    service: str,
    environment: str = "dev",
    manifest_file: str = "relay.yaml",
) -> BuiltService:
    """Checkout → image key → (reused, or image → stage image → compile → SAST → unit tests →
    push) → compliance (for `environment`, where it goes first), packages and image scan."""
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
            image = _build_and_push(
                docker_host, registry, manifest, service, checkout, tree, key, timer
            )
            origin = checkout.commit
        else:
            with timer.stage("image"):
                image = tag_image(registry, image, checkout.commit)
                origin = image_origin(registry, image) or checkout.commit
            timer.note("image", "reused: built before from the same key")
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
            notes=timer.notes,
        )


def _build_and_push(
    docker_host: DockerHost,
    registry: ContainerRegistry,
    manifest: Manifest,
    service: str,
    checkout: Checkout,
    tree: str,
    key: str,
    timer: StageTimer,
) -> ImageRef:
    """Image → stage image → compile → SAST → unit tests (in the stage image) → push: nothing
    reaches the registry before its stages passed."""
    spec = manifest.services[service]
    repository_name = f"{manifest.app}/{service}"
    directory = spec.directory(manifest.root)
    commands = stage_commands(spec, directory)
    with timer.stage("image"):
        local = build_image(
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
    with timer.stage("stage-image"):
        prepared = prepare_stage_image(docker_host, manifest, service, key, local)
    timer.note("stage-image", _where(prepared))
    site = site_of(manifest, service, prepared)
    if commands.build is not None:
        with timer.stage("compile"):
            compile_service(docker_host, service, site, commands.build)
    if commands.sast is not None and spec.sast is not None:
        with timer.stage("sast"):
            run_sast(
                docker_host,
                service,
                sast_site(docker_host, site, commands.sast_by_relay),
                commands.sast,
                spec.sast.fail_on,
                artifact_key(manifest.app, service, "sast"),
                spec.sast.sarif,
            )
    if commands.unit_tests is not None:
        with timer.stage("unit-tests"):
            run_unit_tests(
                docker_host,
                service,
                site,
                commands.unit_tests,
                artifact_key(manifest.app, service, "unit-tests"),
            )
    for stage, why in commands.skipped.items():
        if stage != "integration_tests":
            timer.note(stage.replace("_", "-").replace("build", "compile"), f"skipped: {why}")
    with timer.stage("push"):
        return push_service_image(docker_host, registry, repository_name, checkout.commit, key)


def _where(prepared: StageImage | None) -> str:
    """Where the stages ran, and what the stage image cost with and without the cache."""
    if prepared is None:
        return "runner: host (on the worker)"
    if not prepared.cached:
        return f"{prepared.image}: built in {prepared.seconds:.2f} s"
    if prepared.built_seconds:
        return (
            f"{prepared.image}: cached ({prepared.seconds:.2f} s; "
            f"{prepared.built_seconds:.2f} s when it was built)"
        )
    return f"{prepared.image}: the service's own image"
