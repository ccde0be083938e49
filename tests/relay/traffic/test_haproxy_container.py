"""HAProxy routers as containers on the stack's Docker engine (RELAY_ROUTER_IMAGE): what a
worker that runs in a container needs, because a router process it started would end with the
flow run's container. Real HAProxy (the stack's relay/haproxy:2.6 image, Debian's haproxy),
real backends on loopback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from devstack.tool_images import ROUTER_IMAGE
from relay.errors import RelayError
from relay.traffic.haproxy import HAProxyRouter, Route
from tests.relay.traffic.test_haproxy import backends, hits  # noqa: F401 - the fixture

pytestmark = pytest.mark.stack

BASE = 23100  # test_haproxy's ports (backends at BASE+1, BASE+2); the modules share them
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def router(short_tmp: Path) -> Iterator[HAProxyRouter]:
    router = HAProxyRouter(name="test-container", home=short_tmp, image=ROUTER_IMAGE)
    yield router
    router.remove_managed_routes()
    assert not router.running()


def test_the_router_container_outlives_the_process_that_started_it(
    router: HAProxyRouter,
    backends: dict[str, int],  # noqa: F811
    short_tmp: Path,
) -> None:
    script = textwrap.dedent(f"""
        from pathlib import Path
        from relay.traffic.haproxy import HAProxyRouter, Route
        router = HAProxyRouter("test-container", Path({str(short_tmp)!r}), image={ROUTER_IMAGE!r})
        router.ensure_route(Route("web", {BASE}, {backends!r}))
        router.mark_healthy("web", "green")
        router.set_weight("web", {{"blue": 0, "green": 100}})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, cwd=ROOT)

    assert hits(BASE, 20) == Counter({"green": 20}), "the router serves after its starter ended"
    container = docker.from_env().containers.get("relay-router-test-container")
    assert container.status == "running" and container.attrs["HostConfig"]["NetworkMode"] == "host"


def test_a_new_route_reloads_the_container_and_keeps_the_weights(
    router: HAProxyRouter,
    backends: dict[str, int],  # noqa: F811
) -> None:
    router.ensure_route(Route("web", BASE, backends))
    router.mark_healthy("web", "green")
    router.set_weight("web", {"blue": 0, "green": 100})
    before = router._serving_pid()

    router.ensure_route(Route("api", BASE + 10, {"blue": BASE + 11, "green": BASE + 12}))

    assert router._serving_pid() != before, "a new frontend needs a reload"
    assert router.weights("web") == {"blue": 0, "green": 100}
    assert hits(BASE, 20) == Counter({"green": 20})


def test_a_configuration_haproxy_rejects_changes_nothing(
    router: HAProxyRouter,
    backends: dict[str, int],  # noqa: F811
) -> None:
    router.ensure_route(Route("web", BASE, backends))
    router.mark_healthy("web", "blue")
    router.set_weight("web", {"blue": 100, "green": 0})

    with pytest.raises(RelayError, match="HAProxy rejected the generated"):
        router.ensure_route(Route("bad", BASE + 20, {"blue": 70000, "green": BASE + 22}))

    assert "bad" not in router.routes()
    assert hits(BASE, 10) == Counter({"blue": 10})
