"""Build stages: the stage image a service's commands run in, its compile command and its unit
tests, each in a container of that image (or on the worker with `runner: host`).

Nothing here is retried: a red test or a failed compile is an answer, not a glitch.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Literal

import docker
from docker.errors import APIError, ImageNotFound
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect_docker import DockerHost

from relay.dockerfile import stage_names
from relay.errors import StageFailed
from relay.junit import parse_report, results_table, summary, with_report
from relay.manifest import Manifest
from relay.stages import StageImage, setup_image, setup_inputs, setup_tag, target_image
from relay.stages.container import CommandNotFound, missing_tool_in
from relay.stages.plan import stage_environment
from relay.stages.site import StageResult, StageSite, run_stage


def stage_tag(app: str, service: str) -> str:
    """The local repository of a service's stage images (never pushed)."""
    return f"relay-stage/{app}-{service}"


@task(name="prepare-stage-image", cache_policy=NO_CACHE)
def prepare_stage_image(
    docker_host: DockerHost, manifest: Manifest, service: str, key: str, own_image: str | None
) -> StageImage | None:
    """The image the service's stage commands run in, built or found by its content: the
    Dockerfile's test target, the stage image with its setup, or `own_image` (the service's
    image, built already). None for `runner: host`."""
    spec = manifest.services[service]
    directory = spec.directory(manifest.root)
    text = spec.dockerfile_path(manifest.root).read_text(encoding="utf-8", errors="replace")
    kind, target = stage_environment(spec, stage_names(text))
    if kind == "host":
        return None
    with docker_host.get_client() as client:
        if kind == "target" and target is not None:
            tag = f"{stage_tag(manifest.app, service)}:target-{target}-{key[:24]}"
            prepared = target_image(
                client, directory, spec.dockerfile, target, tag, spec.build_args
            )
        elif kind == "setup":
            base = spec.stage_image or ""
            _ensure_local(client, base)
            inputs = setup_inputs(spec.setup or [], directory, spec.setup_files)
            base_id = str(client.images.get(base).id)
            tag = setup_tag(stage_tag(manifest.app, service), base_id, spec.setup, inputs)
            prepared = setup_image(client, base, spec.setup, inputs, tag)
        else:
            if own_image is None:
                raise StageFailed(f"{service}: its image must be built before its stages run")
            _ensure_local(client, own_image)
            prepared = StageImage(image=own_image, cached=True, seconds=0.0, built_seconds=0.0)
    get_run_logger().info(
        "%s: stages run in %s (%s, %.2f s now%s)",
        service,
        prepared.image,
        "cached" if prepared.cached else "built",
        prepared.seconds,
        f", {prepared.built_seconds:.2f} s when built" if prepared.cached else "",
    )
    return prepared


# Relay's default SAST for Python, bandit, reads the source and imports nothing from it: it runs
# in Relay's own image (python:3.11-slim with bandit pinned, built once per engine), so that a
# service whose image or test stage has no bandit needs nothing for it. A `sast.command` of the
# service's own runs where its other stages do.
SAST_BASE = "python:3.11-slim"
SAST_SETUP = ["pip", "install", "--no-cache-dir", "bandit==1.9.4"]


@task(name="prepare-sast-image", cache_policy=NO_CACHE)
def prepare_sast_image(docker_host: DockerHost) -> StageImage:
    with docker_host.get_client() as client:
        _ensure_local(client, SAST_BASE)
        base_id = str(client.images.get(SAST_BASE).id)
        tag = setup_tag("relay-stage/relay-sast", base_id, SAST_SETUP, {})
        return setup_image(client, SAST_BASE, SAST_SETUP, {}, tag)


def sast_site(docker_host: DockerHost, site: StageSite, relays: bool) -> StageSite:
    """Where SAST runs: Relay's SAST image for Relay's default command (unless the service's
    stages run on the worker), else with the service's other stages."""
    if not relays or site.image is None:
        return site
    return StageSite(site.directory, prepare_sast_image(docker_host).image, site.inside)


def _ensure_local(client: docker.DockerClient, image: str) -> None:
    """A stage image named in relay.yaml is pulled once when the engine does not have it."""
    try:
        client.images.get(image)
    except ImageNotFound:
        try:
            client.images.pull(image)
        except APIError as exc:
            raise StageFailed(
                f"stage_image {image!r} is not on the Docker engine and could not be pulled: "
                f"{exc.explanation}; correct the name, or make it available to the engine"
            ) from exc


def site_of(manifest: Manifest, service: str, prepared: StageImage | None) -> StageSite:
    spec = manifest.services[service]
    image = prepared.image if prepared is not None else None
    return StageSite.of(spec.directory(manifest.root), spec.path, image)


def run_in_site(
    docker_host: DockerHost,
    site: StageSite,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    network: Literal["none", "host"] = "none",
    timeout: float = 600,
    reports: list[str] | None = None,
    files: list[str] | None = None,
    token: str = "",
    service: str = "",
    setting: str = "",
) -> StageResult:
    """One stage command where the service's stages run. A command the stage image does not
    have fails naming `service` and what to change (`setting`, or where to install it)."""
    try:
        return _run_in_site(docker_host, site, argv, env, network, timeout, reports, files, token)
    except CommandNotFound as exc:
        where = f"the stage image {site.image}"
        hint = install_hint(service, setting, exc.tool, where) if service else ""
        raise StageFailed(f"{service}: {exc}{hint}" if service else str(exc)) from exc


def _run_in_site(
    docker_host: DockerHost,
    site: StageSite,
    argv: list[str],
    env: dict[str, str] | None,
    network: Literal["none", "host"],
    timeout: float,
    reports: list[str] | None,
    files: list[str] | None,
    token: str,
) -> StageResult:
    if site.image is None:
        return run_stage(
            None,
            site,
            argv,
            env=env,
            timeout=timeout,
            reports=reports or [],
            files=files or [],
            token=token,
        )
    with docker_host.get_client() as client:
        return run_stage(
            client,
            site,
            argv,
            env=env,
            network=network,
            timeout=timeout,
            reports=reports or [],
            files=files or [],
            token=token,
        )


def tool_hint(service: str, setting: str, result: StageResult) -> str:
    """What to change when the stage image lacks the command's tool, else nothing."""
    tool = missing_tool_in(result.output)
    if tool is None:
        return ""
    return install_hint(service, setting, tool, result.where)


def install_hint(service: str, setting: str, tool: str, where: str) -> str:
    """Where to install `tool`, or which setting to change instead."""
    if where.startswith("the worker"):
        return (
            f"\n{tool} is not installed on the worker: with runner: host the stages use Relay's "
            f"own Python; remove services.{service}.runner to run them in the service's stage "
            "image, where its dependencies are"
        )
    return (
        f"\n{tool} is not installed in {where}: install it in the Dockerfile's test "
        f"stage (test_target) or in the setup of stage_image, or set services.{service}."
        f"{setting} in relay.yaml"
    )


@task(name="compile-service", cache_policy=NO_CACHE)
def compile_service(
    docker_host: DockerHost, service: str, site: StageSite, command: list[str]
) -> StageResult:
    result = run_in_site(docker_host, site, command, timeout=600, service=service, setting="build")
    if not result.ok:
        raise StageFailed(
            f"{service}: build command {' '.join(command)} failed in {result.where}:\n"
            f"{result.tail()}{tool_hint(service, 'build', result)}"
        )
    return result


def run_tests(
    docker_host: DockerHost,
    kind: str,
    service: str,
    site: StageSite,
    command: list[str],
    artifact_key: str,
    env: dict[str, str] | None = None,
    network: Literal["none", "host"] = "none",
) -> StageResult:
    """Run a test command, publish its results as a table artifact, fail on a red run."""
    token = uuid.uuid4().hex[:12]
    name = f"{kind.replace(' ', '-')}.xml"
    argv = with_report(command, Path(site.report_dir(token)) / name)
    result = run_in_site(
        docker_host,
        site,
        argv,
        env=env,
        network=network,
        timeout=900,
        reports=[name],
        token=token,
        service=service,
        setting=kind.replace(" ", "_"),
    )
    cases = parse_report(result.reports.get(name, b""))
    if artifact_key:
        create_table_artifact(
            key=artifact_key,
            table=results_table(cases, command, result.ok),
            description=f"{kind.capitalize()} of {service} ({result.where}): {summary(cases)}",
        )
    if not result.ok:
        setting = kind.replace(" ", "_")
        raise StageFailed(
            f"{service}: {kind} failed ({summary(cases)}) in {result.where}:\n"
            f"{result.tail()}{tool_hint(service, setting, result)}"
        )
    return result


@task(name="run-unit-tests", cache_policy=NO_CACHE)
def run_unit_tests(
    docker_host: DockerHost, service: str, site: StageSite, command: list[str], artifact_key: str
) -> StageResult:
    """Unit tests: no network, nothing of the worker; never retried."""
    return run_tests(docker_host, "unit tests", service, site, command, artifact_key)
