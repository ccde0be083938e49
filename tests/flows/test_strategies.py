"""Strategy subflows on the real Docker engine and HAProxy, under a steady request load."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import docker
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect_docker import DockerHost

from deployments.approvals import PAUSED, auto_approving, decide
from flows.kept_versions import stop_kept_versions
from flows.strategies import blue_green, canary, rolling
from relay.errors import RolledBack, TerminalError
from relay.manifest import Analysis, Approval, Environment
from relay.platforms.docker import DeployResult, DeploySpec, DockerPlatform
from relay.settings import relay_home
from relay.traffic import Route, make_router
from tests.echo import Load, echo_spec, make_image

pytestmark = pytest.mark.stack

APP = f"strat{uuid.uuid4().hex[:6]}"
PUBLIC = 23301
ROUTE = Route("echo", PUBLIC, {"blue": PUBLIC + 1, "green": PUBLIC + 2})
URL = f"http://127.0.0.1:{PUBLIC}/"

ENV = Environment(
    port_offset=0,
    secrets="unused",
    strategy="canary",
    canary_steps=[20, 50, 100],
    analysis=Analysis(interval_seconds=2, min_requests=10, max_error_rate=0.05),
    keep_previous_seconds=1,
)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("strategy-images")
    repository = f"{os.environ['RELAY_REGISTRY']}/{APP}/echo"
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
        return {
            "v1": make_image(client, tmp, repository, "v1"),
            "v2": make_image(client, tmp, repository, "v2"),
            "bad": make_image(client, tmp, repository, "bad", fail_percent=50),
        }


@pytest.fixture
def stable(images: dict[str, str]) -> Iterator[DockerHost]:
    """v1 serving, before each test; everything removed after it."""
    host = DockerHost()
    asyncio.run(rolling(host, spec(images["v1"]), ENV, False, None))
    yield host
    router = make_router("haproxy", name=f"{APP}-test", home=relay_home())
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
        DockerPlatform(client, router).remove_all(APP, "test")
    router.remove_managed_routes()


def spec(image: str) -> DeploySpec:
    return echo_spec(APP, ROUTE, image)


def running_images() -> list[str]:
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
        return [
            c.labels["relay.image"]
            for c in client.containers.list(filters={"label": f"relay.app={APP}"})
        ]


def test_a_good_canary_takes_traffic_step_by_step(
    stable: DockerHost, images: dict[str, str]
) -> None:
    with Load(URL) as load:
        result = asyncio.run(canary(stable, spec(images["v2"]), ENV, True, None))
    assert result.image == images["v2"]
    assert not load.transport_errors
    assert all(status == 200 for _, _, status in load.log)
    versions = [v for _, v, _ in load.log]
    first_v2 = versions.index("v2")
    ramp = versions[first_v2 : first_v2 + 40]
    assert 0 < ramp.count("v2") < len(ramp), "v2 shared traffic with v1 before taking it all"
    assert set(versions[-10:]) == {"v2"}
    assert running_images() == [images["v2"]]


def test_a_bad_canary_never_gets_past_its_first_step(
    stable: DockerHost, images: dict[str, str]
) -> None:
    with Load(URL) as load:
        with pytest.raises(RolledBack, match="canary analysis failed at 20%") as failure:
            asyncio.run(canary(stable, spec(images["bad"]), ENV, True, None))
        after = len(load.log)
        load.wait_for_more(50)
    assert "error rate" in str(failure.value)
    assert not load.transport_errors, "no request failed to connect, even during the rollback"
    bad = load.versions()["bad"]
    total = sum(load.versions().values())
    assert 0 < bad <= 0.2 * total + 10, "the bad version saw only its first step's share"
    assert all(v == "v1" for _, v, _ in load.log[after:]), "100% stable right after the rollback"
    assert all(status == 200 for _, v, status in load.log if v == "v1")
    assert running_images() == [images["v1"]]


def test_blue_green_switches_with_no_failed_request(
    stable: DockerHost, images: dict[str, str]
) -> None:
    env = ENV.model_copy(update={"strategy": "blue_green"})
    with Load(URL) as load:
        asyncio.run(blue_green(stable, spec(images["v2"]), env, True, None))
        load.wait_for_more(20)
    assert not load.transport_errors
    assert all(status == 200 for _, _, status in load.log)
    versions = [v for _, v, _ in load.log]
    switch = versions.index("v2")
    assert set(versions[:switch]) == {"v1"} and set(versions[switch:]) == {"v2"}, "one clean switch"
    assert sorted(running_images()) == sorted([images["v1"], images["v2"]]), "v1 kept, idle"
    time.sleep(ENV.keep_previous_seconds)
    assert f"relay-{APP}-test-echo-blue" in asyncio.run(stop_kept_versions())
    assert running_images() == [images["v2"]], "after its window the previous version is gone"


def test_a_version_that_never_starts_leaves_the_stable_one(
    stable: DockerHost, images: dict[str, str], tmp_path: Path
) -> None:
    repository = f"{os.environ['RELAY_REGISTRY']}/{APP}/echo"
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
        broken = make_image(client, tmp_path, repository, "broken", crash=True)
    with Load(URL) as load, pytest.raises(Exception, match="never answered"):
        asyncio.run(canary(stable, spec(broken), ENV, True, None))
    assert not load.transport_errors and set(load.versions()) == {"v1"}
    assert running_images() == [images["v1"]]


def waiting_canary_decision(timeout: float = 60) -> Any:
    """The approval subflow an inconclusive canary of this module's app waits in."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    name=FlowRunFilterName(any_=[f"approve-{APP}-test"]), state=PAUSED
                )
            )
        if runs:
            return runs[0]
        time.sleep(0.5)
    raise AssertionError(f"no paused approval of {APP} within {timeout} s")


def test_an_inconclusive_canary_waits_for_an_approver_and_a_rejection_rolls_it_back(
    stable: DockerHost, images: dict[str, str]
) -> None:
    """`on_inconclusive: pause` asks through the environment's approval rules: a name outside
    `approvers` is refused and the canary keeps waiting with traffic split; the approver's
    rejection rolls it back."""
    analysis = Analysis(interval_seconds=1, min_requests=100_000, on_inconclusive="pause")
    approval = Approval(required=False, approvers=["alice"], timeout_seconds=120)
    env = ENV.model_copy(update={"analysis": analysis, "approval": approval})
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            asyncio.run(canary(stable, spec(images["v2"]), env, True, None))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    form = waiting_canary_decision()
    assert sorted(running_images()) == sorted([images["v1"], images["v2"]]), "traffic stays split"
    with pytest.raises(TerminalError, match="'mallory' is not an approver here"):
        decide(str(form.id), True, "mallory", "let it through")
    assert thread.is_alive(), "a refused name must not decide"
    decide(str(form.id), False, "alice", "too quiet to judge")
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), RolledBack), outcome
    assert "alice rejected" in str(outcome["error"]) and "too quiet to judge" in str(
        outcome["error"]
    )
    assert running_images() == [images["v1"]]


def test_auto_approve_of_a_parent_run_continues_an_inconclusive_canary(
    stable: DockerHost, images: dict[str, str]
) -> None:
    """The decision sits two levels down (a promotion → its canary → the approval), where
    `relay promote --auto-approve` and `relay approve <promotion run>` must still find it."""
    analysis = Analysis(interval_seconds=1, min_requests=100_000, on_inconclusive="pause")
    approval = Approval(required=False, approvers=["alice"], timeout_seconds=120)
    env = ENV.model_copy(update={"analysis": analysis, "approval": approval})
    name = f"deploy-{APP}-{uuid.uuid4().hex[:6]}"

    @flow(flow_run_name=name)
    async def deploy() -> DeployResult:
        return await canary(stable, spec(images["v2"]), env, True, None)

    with auto_approving("alice", run_name=name):
        result = asyncio.run(deploy())
    assert result.image == images["v2"]
    assert running_images() == [images["v2"]]
