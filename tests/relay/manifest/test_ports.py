"""relay/manifest/ports.py: the docker platform's host ports."""

from __future__ import annotations

from pathlib import Path

from relay.manifest import Environment, Service, ServicePorts
from tests.relay.manifest.documents import VALID, problems, with_environments


def test_ports_on_docker_have_two_slots_above_the_public_port() -> None:
    service = Service(path="services/orders", port=8002)
    docker = Environment(port_offset=10000, secrets="dev-config")
    kubernetes = Environment(platform="kubernetes", namespace="shop-prod", secrets="prod-config")

    assert docker.ports(service) == ServicePorts(public=18002, blue=18102, green=18202)
    assert kubernetes.ports(service) == ServicePorts(public=8002, blue=8002, green=8002)


def test_computed_ports_colliding_in_one_environment(tmp_path: Path) -> None:
    text = VALID.replace("port: 8003", "port: 8102")

    assert problems(tmp_path, text) == [
        "services.payments.port: port 18102 in environments.dev is both the blue slot of orders "
        "(8002 + 10000 + 100) and the public port of payments (8102 + 10000); on docker each "
        "service also takes the two slot ports 100 and 200 above its public port, so choose "
        "service ports that are not 100 or 200 apart"
    ]


def test_computed_ports_colliding_across_environments(tmp_path: Path) -> None:
    text = with_environments(
        """\
        environments:
          dev: {port_offset: 10000}
          staging: {port_offset: 10200}
        """
    )

    assert problems(tmp_path, text) == [
        "environments.staging.port_offset: port 18200 is both the green slot of gateway in dev "
        "(8000 + 10000 + 200) and the public port of gateway in staging (8000 + 10200); "
        "choose port_offset values at least 204 apart"
    ]


def test_computed_ports_in_the_ephemeral_range(tmp_path: Path) -> None:
    text = with_environments(
        """\
        environments:
          dev: {port_offset: 30000}
        """
    )

    assert problems(tmp_path, text) == [
        "environments.dev.port_offset: services.payments would get port 38203 in "
        "environments.dev (its green slot: 8003 + 30000 + 200), above 32767 (ports above it "
        "are Linux's ephemeral range, where outgoing connections take their local ports); "
        "choose a port_offset of at most 24564"
    ]
