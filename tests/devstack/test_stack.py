"""devstack against the real local stack: dockerd, base image, registry, moto, Prometheus,
Prefect server.

The module fixture brings the stack up only if nothing of it is running, and then brings it down
at the end; a stack that was already up (fully or partly) is left as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import devstack

pytestmark = pytest.mark.stack

COMPONENTS = ["dockerd", "base-image", "registry", "moto", "prometheus", "prefect", "worker"]


def components(mode: devstack.StackMode) -> list[str]:
    """What a stack in `mode` runs, in order: PostgreSQL first, the workers last."""
    extra = [f"worker-{n}" for n in range(2, mode.workers + 1)]
    return (["postgres"] if mode.postgres else []) + COMPONENTS + extra


MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
MANAGED = {devstack.MANAGED_LABEL: "true"}
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def live_stack() -> Iterator[dict[str, str]]:
    before = devstack.status()
    started_here = not before.any_running
    if not before.all_running:
        devstack.up(progress=print)
    yield devstack.environment()
    if started_here:
        devstack.down(progress=print)


@pytest.fixture(scope="module")
def docker_client(live_stack: dict[str, str]) -> Iterator[Any]:
    import docker

    client = docker.DockerClient(base_url=live_stack["DOCKER_HOST"], timeout=120)
    yield client
    client.close()


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    return _NO_PROXY.open(req, timeout=10)


def test_status_shows_every_component_running(live_stack: dict[str, str]) -> None:
    st = devstack.status()
    mode = devstack.load_mode(devstack.stack_paths())
    assert [c.name for c in st.components] == components(mode)
    not_ready = [c.name for c in st.components if not (c.running and c.ready)]
    assert not not_ready, f"not running/ready: {not_ready}\n{st}"
    for c in st.components:
        if c.name != "base-image":
            assert isinstance(c.pid, int) and Path(f"/proc/{c.pid}").exists()
    assert st["dockerd"].address == live_stack["DOCKER_HOST"]
    if mode.postgres:  # the stack's clients find Relay's database there
        assert live_stack.get("RELAY_DATABASE_URL", "").endswith(f":{devstack.POSTGRES_PORT}/relay")


def test_second_up_starts_nothing_new_and_is_fast(live_stack: dict[str, str]) -> None:
    before = devstack.status().pids
    lines: list[str] = []
    t0 = time.monotonic()
    after = devstack.up(progress=lines.append)
    took = time.monotonic() - t0
    assert after.pids == before
    assert took < 3.0, f"second up took {took:.1f} s:\n" + "\n".join(lines)
    assert not [line for line in lines if "ready in" in line or "built" in line], lines


def test_image_from_base_builds_and_runs_with_host_network(
    docker_client: Any, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE=python:3.11-slim\n"
        "FROM ${BASE_IMAGE}\n"
        "RUN pip --version && mkdir /app\n"
        "USER 65534\n"
        'CMD ["python3", "-c", "print(1)"]\n'
    )
    tag = f"relay-test/stack-app:{uuid.uuid4().hex[:12]}"
    docker_client.images.build(
        path=str(tmp_path),
        tag=tag,
        network_mode="host",
        pull=False,
        rm=True,
        forcerm=True,
        labels=MANAGED,
    )
    try:
        out = docker_client.containers.run(
            tag, ["python3", "-c", "print(1)"], network_mode="host", remove=True, labels=MANAGED
        )
        assert out == b"1\n"
    finally:
        docker_client.images.remove(tag, force=True)


def test_push_to_registry_and_resolve_digest(
    docker_client: Any, live_stack: dict[str, str], tmp_path: Path
) -> None:
    registry = live_stack["RELAY_REGISTRY"]
    (tmp_path / "hello.txt").write_text(f"hello {uuid.uuid4()}\n")  # unique content: a new digest
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    repo, tag = f"{registry}/relay-test/tiny", uuid.uuid4().hex[:12]
    docker_client.images.build(path=str(tmp_path), tag=f"{repo}:{tag}", pull=False, rm=True)
    try:
        pushed = None
        for event in docker_client.images.push(repo, tag=tag, stream=True, decode=True):
            assert "error" not in event, event
            pushed = event.get("aux", {}).get("Digest", pushed)
        assert pushed and pushed.startswith("sha256:")

        url = f"http://{registry}/v2/relay-test/tiny/manifests/{tag}"
        with _request(url, "HEAD", {"Accept": MANIFEST_V2}) as resp:
            assert resp.status == 200
            assert resp.headers["Docker-Content-Digest"] == pushed
        with _request(f"http://{registry}/v2/relay-test/tiny/manifests/{pushed}", "DELETE") as r:
            assert r.status == 202  # delete is enabled in the stack's registry config
    finally:
        docker_client.images.remove(f"{repo}:{tag}", force=True)


def test_moto_answers_sts_through_aws_endpoint_url(
    live_stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, live_stack[key])
    monkeypatch.setenv("AWS_DEFAULT_REGION", live_stack["AWS_DEFAULT_REGION"])
    sts = boto3.session.Session().client("sts")
    assert sts.meta.endpoint_url == live_stack["AWS_ENDPOINT_URL"]
    assert sts.get_caller_identity()["Account"] == "123456789012"


def test_prometheus_scrapes_the_router_targets_relay_writes(live_stack: dict[str, str]) -> None:
    """A target file appearing under $RELAY_HOME/prometheus/targets is scraped within seconds
    (file discovery), with its labels: how every HAProxy router reaches Prometheus."""
    from relay.settings import prometheus_targets

    url = live_stack["RELAY_PROMETHEUS_URL"]
    port = url.rsplit(":", 1)[1]
    name = f"selftest-{uuid.uuid4().hex[:6]}"
    target = prometheus_targets(Path(live_stack["RELAY_HOME"])) / f"{name}.json"
    # Prometheus scrapes itself here: a target that is surely up.
    target.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"router": name}}]))
    try:
        query = urllib.parse.quote(f'up{{router="{name}"}}')
        deadline = time.monotonic() + 20
        found: list[Any] = []
        while time.monotonic() < deadline and not found:
            with _request(f"{url}/api/v1/query?query={query}") as resp:
                found = json.loads(resp.read())["data"]["result"]
            time.sleep(0.5)
        assert found and found[0]["value"][1] == "1", f"{name} was not scraped in 20 s"
    finally:
        target.unlink()


def test_prefect_health_and_work_pool(live_stack: dict[str, str]) -> None:
    api = live_stack["PREFECT_API_URL"]
    with _request(f"{api}/health") as resp:
        assert resp.status == 200
        assert json.loads(resp.read()) is True
    with _request(f"{api}/work_pools/relay") as resp:
        assert json.loads(resp.read())["type"] == "process"


def test_down_stops_only_processes_whose_cmdline_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fast, no stack needed: a separate RELAY_HOME with hand-made pidfiles."""
    home = tmp_path / "h"
    (home / "run").mkdir(parents=True)
    monkeypatch.setenv("RELAY_HOME", str(home))
    me = os.getpid()
    # PIDs whose command line does not match (this pytest process): must survive.
    (home / "run" / "haproxy-guard.pid").write_text(f"{me}\n")
    (home / "run" / "prefect.pid").write_text(f"{me}\n")
    # A process that does look like haproxy (argv[0] is "haproxy"): must be stopped.
    fake = subprocess.Popen(
        ["haproxy", "60"], executable=shutil.which("sleep"), start_new_session=True
    )
    (home / "run" / "haproxy-fake.pid").write_text(f"{fake.pid}\n")
    try:
        lines: list[str] = []
        devstack.down(progress=lines.append)
        assert fake.wait(timeout=5) == -15  # SIGTERM
        os.kill(me, 0)  # still here
        assert any(line.startswith("haproxy-guard") and "not ours" in line for line in lines)
        assert any(line.startswith("prefect") and "not ours" in line for line in lines)
        assert not list((home / "run").glob("*.pid"))
    finally:
        if fake.poll() is None:
            fake.kill()
