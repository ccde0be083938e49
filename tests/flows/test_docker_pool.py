"""A release on a `docker` work pool: Prefect's docker worker (prefect-docker) runs the release
flow in a container of Relay's worker image (the project's Dockerfile, built on the stack's
engine), which reaches the engine only through DOCKER_HOST (its socket, mounted) and everything
else (Prefect, PostgreSQL, the registry, moto) on loopback. The repository is read over git://,
the HAProxy router runs as a container of its own, so the service still answers once the flow
run's container has ended. Real stack, real images, no mocks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect_docker.worker import DockerWorker

import devstack
from deployments.register import on_pool, prefect_deploy
from devstack.tool_images import ROUTER_IMAGE, WORKER_IMAGE, build_worker_image
from relay.ledger import Ledger, Outcome
from relay.settings import platform_home, relay_database
from relay.traffic.haproxy import HAProxyRouter
from tests.flows.shop import Shop, shop_repository

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
OFFSETS = {"dev": 13250}  # the shop's staging and prod keep 12000 and 14000
POOL = "relay-docker-test"
WORKER_NAME = "docker-test-worker"
DEPLOYMENT = "release-on-docker"
FORWARDED = (  # what the job container needs of the stack's environment, besides DOCKER_HOST
    "RELAY_REGISTRY",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "RELAY_PROMETHEUS_URL",
    "RELAY_DATABASE_URL",
    # this machine's trust store (its HTTPS proxy's CA), for the advisories from PyPI
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with shop_repository(tmp_path_factory, "dockerpool", OFFSETS, services=("catalog",)) as shop:
        yield shop
        # the router is a container here, which the shop's own clean-up does not know
        HAProxyRouter(f"{shop.app}-dev", platform_home(), image=ROUTER_IMAGE).stop()


@pytest.fixture(scope="module")
def git_url(shop: Shop) -> Iterator[str]:
    """The shop's repository served by `git daemon` on loopback: the job container has no
    access to this machine's files."""
    port = _free_port()
    base = shop.repo.parent
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}",
         "--listen=127.0.0.1", f"--port={port}", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"git://127.0.0.1:{port}/{shop.repo.name}"
    try:
        deadline = time.monotonic() + 15
        while subprocess.run(["git", "ls-remote", url], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "git daemon never answered"
            time.sleep(0.2)
        yield url
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def _job_variables() -> dict[str, Any]:
    paths = devstack.stack_paths()
    socket_path = paths.docker_host.removeprefix("unix://")
    home = str(platform_home())
    return {
        "image": WORKER_IMAGE,
        "image_pull_policy": "Never",
        "network_mode": "host",
        "auto_remove": False,  # the test reads the container, then removes it
        "volumes": [f"{socket_path}:/var/run/docker.sock", f"{home}:{home}"],
        "env": {
            "DOCKER_HOST": "unix:///var/run/docker.sock",
            "RELAY_PLATFORM_HOME": home,
            "RELAY_ROUTER_IMAGE": ROUTER_IMAGE,
            "RELAY_SERVICE_RUNS": "in-process",
            **{key: os.environ[key] for key in FORWARDED if key in os.environ},
        },
    }


async def _create_pool() -> None:
    """A docker pool whose job template carries the stack's settings as defaults, as the README
    tells a user to set up theirs: the deployments then only name the image."""
    template = DockerWorker.get_default_base_job_template()
    for key, value in _job_variables().items():
        template["variables"]["properties"][key]["default"] = value
    async with get_client() as client:
        with contextlib.suppress(ObjectNotFound):  # one left by an interrupted run
            await client.delete_work_pool(POOL)
        await client.create_work_pool(
            WorkPoolCreate(name=POOL, type="docker", base_job_template=template)
        )


def _register_release_on_pool() -> str:
    """prefect.yaml's `release` moved to the pool with the worker image, as `relay deploy --pool
    ... --image ...` moves every deployment, under a name of its own: the other tests of the
    session use `release/release` on the process pool."""
    config = on_pool(yaml.safe_load((ROOT / "prefect.yaml").read_text()), POOL, WORKER_IMAGE)
    (deployment,) = [d for d in config["deployments"] if d["name"] == "release"]
    deployment["name"] = DEPLOYMENT
    config["deployments"] = [deployment]
    prefect_file = ROOT / f".prefect-{DEPLOYMENT}.yaml"
    prefect_file.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        prefect_deploy(prefect_file, "", None, [DEPLOYMENT], WORKER_IMAGE)
    finally:
        prefect_file.unlink()
    with get_client(sync_client=True) as client:
        registered = client.read_deployment_by_name(f"release/{DEPLOYMENT}")
    pull = registered.pull_steps or []
    assert pull[0]["prefect.deployments.steps.set_working_directory"]["directory"] == "/opt/relay"
    assert registered.job_variables == {"image": WORKER_IMAGE}
    return str(registered.id)


@pytest.fixture(scope="module")
def docker_pool() -> Iterator[str]:
    """The worker image, a docker work pool with the release deployment, and its worker: a
    process of this machine whose job containers the stack's engine runs."""
    build_worker_image(devstack.stack_paths(), ROOT)
    asyncio.run(_create_pool())
    deployment_id = _register_release_on_pool()
    env = {**os.environ, "PREFECT_WORKER_QUERY_SECONDS": "2"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "docker",
         "--name", WORKER_NAME],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    try:
        yield deployment_id
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

        async def delete() -> None:
            async with get_client() as client:
                await client.delete_work_pool(POOL)

        asyncio.run(delete())


def test_a_release_runs_to_dev_in_a_container_of_the_worker_image(
    shop: Shop, git_url: str, docker_pool: str
) -> None:
    sha = shop.commit("catalog, released from a docker work pool")

    run = run_deployment(
        docker_pool,  # release/release-on-docker
        parameters={"repository": git_url, "commit": sha},
        timeout=900,
    )

    client = docker.from_env()
    container_id = (run.infrastructure_pid or "").rsplit(":", 1)[-1]
    container = client.containers.get(container_id)
    try:
        assert run.state is not None and run.state.is_completed(), run.state.message
        assert run.labels.get("prefect.worker.name") == WORKER_NAME
        assert WORKER_IMAGE in container.image.tags, container.image.tags
        # the run is reported completed just before its process exits
        assert container.wait(timeout=60)["StatusCode"] == 0
    finally:
        container.remove(force=True)

    # The flow run's container has ended; its router, a container of its own, still serves.
    port = 8005 + OFFSETS["dev"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=5) as response:
        assert json.load(response)["version"] == sha
    records = Ledger(relay_database()).history(shop.app, "catalog", "dev", limit=5)
    assert [(r.commit, r.outcome) for r in records] == [(sha, Outcome.SUCCEEDED)]
