"""The docker platform against the real Docker engine, registry and HAProxy of the stack."""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import docker
import pytest

from relay.errors import StageFailed
from relay.platforms.docker import DeploySpec, DockerPlatform
from relay.registry import ImageRef, RegistryClient
from relay.traffic import HAProxyRouter, Route
from tests.echo import make_image as echo_image

pytestmark = pytest.mark.stack

PUBLIC = 23201
ROUTE = Route("echo", PUBLIC, {"blue": PUBLIC + 1, "green": PUBLIC + 2})
APP = f"plat{uuid.uuid4().hex[:6]}"


def make_image(client: docker.DockerClient, tmp: Path, version: str, crash: bool = False) -> str:
    return echo_image(client, tmp, f"{os.environ['RELAY_REGISTRY']}/{APP}/echo", version, crash)


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as c:
        yield c


@pytest.fixture(scope="module")
def images(client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("images")
    return {
        "v1": make_image(client, tmp, "v1"),
        "v2": make_image(client, tmp, "v2"),
        "broken": make_image(client, tmp, "broken", crash=True),
    }


@pytest.fixture
def platform(client: docker.DockerClient, short_tmp: Path) -> Iterator[DockerPlatform]:
    router = HAProxyRouter(name=f"{APP}-test", home=short_tmp)
    yield DockerPlatform(client, router)
    DockerPlatform(client, router).remove_all(APP, "test")
    router.remove_managed_routes()


def spec(image: str) -> DeploySpec:
    return DeploySpec(
        app=APP,
        environment="test",
        service="echo",
        image=ImageRef.parse(image),
        commit="c0ffee",
        tree="t",
        route=ROUTE,
        health_timeout=15,
    )


def version() -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{PUBLIC}/", timeout=5) as response:
        return str(json.load(response)["version"])


def test_deploy_by_digest_then_switch_to_new_version(
    platform: DockerPlatform, images: dict[str, str]
) -> None:
    first = platform.deploy(spec(images["v1"]))
    assert first.changed and first.previous is None
    assert version() == "v1"

    second = platform.deploy(spec(images["v2"]))
    assert second.changed and second.previous == images["v1"]
    assert second.slot != first.slot
    assert version() == "v2"

    running = platform.running(APP, "test", "echo")
    assert [r.image for r in running] == [images["v2"]], "the old container is gone"
    assert running[0].digest == images["v2"].rsplit("@", 1)[1]
    container = platform.client.containers.get(running[0].container_id)
    assert container.attrs["Config"]["Image"] == images["v2"], "runs by digest, not by tag"


def test_same_image_again_changes_nothing(platform: DockerPlatform, images: dict[str, str]) -> None:
    platform.deploy(spec(images["v1"]))
    before = platform.running(APP, "test", "echo")
    again = platform.deploy(spec(images["v1"]))
    assert not again.changed
    assert platform.running(APP, "test", "echo") == before


def test_a_crashing_version_leaves_the_previous_one_serving(
    platform: DockerPlatform, images: dict[str, str]
) -> None:
    platform.deploy(spec(images["v1"]))
    with pytest.raises(StageFailed, match="previous version keeps serving") as failure:
        platform.deploy(spec(images["broken"]))
    assert "crashing on purpose" in str(failure.value)
    assert version() == "v1"
    assert [r.image for r in platform.running(APP, "test", "echo")] == [images["v1"]]


def test_state_is_read_back_from_container_labels(
    client: docker.DockerClient, platform: DockerPlatform, images: dict[str, str], tmp_path: Path
) -> None:
    platform.deploy(spec(images["v1"]))
    # a new platform object (a restarted worker) knows what runs from the engine alone
    fresh = DockerPlatform(client, platform.router)
    active = fresh.active(APP, "test", "echo")
    assert active is not None and active.image == images["v1"]


def test_registry_client_reads_and_copies_tags(images: dict[str, str]) -> None:
    repository = f"{APP}/echo"
    with RegistryClient(os.environ["RELAY_REGISTRY"]) as registry:
        digest = registry.digest(repository, "v1")
        assert digest == images["v1"].rsplit("@", 1)[1]
        assert registry.digest(repository, "no-such-tag") is None
        assert registry.tag(repository, digest, "release-1") == digest
        assert registry.digest(repository, "release-1") == digest
        assert {"v1", "v2", "release-1"} <= set(registry.tags(repository))


def test_canary_weights_split_real_traffic(
    platform: DockerPlatform, images: dict[str, str]
) -> None:
    platform.deploy(spec(images["v1"]))
    rollout = platform.start_new(spec(images["v2"]))
    for percent in (10, 25, 50):
        platform.set_canary_weight(rollout, percent)
        counts = Counter(version() for _ in range(200))
        assert counts["v2"] == 2 * percent, f"{percent}%: {counts}"
    platform.abort(rollout)
    assert Counter(version() for _ in range(50)) == Counter({"v1": 50})
    assert [r.image for r in platform.running(APP, "test", "echo")] == [images["v1"]]
