"""The docker platform's host ports: each service's public port and two slot ports
(`ServicePorts`), and the checks that no two services or environments would share a host port
and that none lands in Linux's ephemeral range. Pure: ports and offsets in, problems out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from relay.manifest.limits import BLUE_SLOT, DOCKER_PORT_MAX, GREEN_SLOT
from relay.manifest.messages import CROSS_ENV_PORT_CLASH, PORT_TOO_HIGH, SAME_ENV_PORT_CLASH

__all__ = ["BLUE_SLOT", "GREEN_SLOT", "ServicePorts", "docker_port_problems", "docker_ports"]


@dataclass(frozen=True)
class ServicePorts:
    """The host ports of one service in one environment.

    On docker, containers share the host's network, so a new container cannot take the port of
    the one it replaces while both run. Each service therefore has two slot ports, blue and
    green, used in turn by successive versions, and a public port where the router (HAProxy)
    listens and sends traffic to the live slot(s). On kubernetes every pod has its own address,
    so all three are the service's own port.
    """

    public: int
    blue: int
    green: int


def docker_ports(port: int, offset: int) -> ServicePorts:
    """The host ports on docker of a service listening on `port`, in an environment with
    `offset`: the public port `port + offset` and the blue and green slots above it."""
    public = port + offset
    return ServicePorts(public=public, blue=public + BLUE_SLOT, green=public + GREEN_SLOT)


@dataclass(frozen=True)
class _HostPort:
    """One host port a service takes in a docker environment."""

    env: str
    service: str
    slot: str  # "public port" | "blue slot" | "green slot"
    port: int
    detail: str  # how it is computed, e.g. "8002 + 10000 + 100"

    def describe(self, same_env: bool) -> str:
        where = "" if same_env else f" in {self.env}"
        return f"the {self.slot} of {self.service}{where} ({self.detail})"


def _host_ports(env_name: str, offset: int, ports: Mapping[str, int]) -> list[_HostPort]:
    taken: list[_HostPort] = []
    for service, port in ports.items():
        for slot, extra in (
            ("public port", 0),
            ("blue slot", BLUE_SLOT),
            ("green slot", GREEN_SLOT),
        ):
            detail = f"{port} + {offset}" + (f" + {extra}" if extra else "")
            taken.append(_HostPort(env_name, service, slot, port + offset + extra, detail))
    return taken


def docker_port_problems(offsets: Mapping[str, int], ports: Mapping[str, int]) -> list[str]:
    """Host ports that two services (or environments) would share, or that do not exist.

    Args:
        offsets: The port_offset of each docker environment that has one, in promotion order.
        ports: Each service's port.
    """
    unique: dict[str, int] = {}
    for name, port in ports.items():  # a repeated service port is reported on its own
        if port not in unique.values():
            unique[name] = port
    if not unique:
        return []
    gap = max(unique.values()) - min(unique.values()) + GREEN_SLOT + 1
    problems: list[str] = []
    users: dict[int, _HostPort] = {}
    reported: set[frozenset[str]] = set()
    for env_name, offset in offsets.items():
        problems += _port_range_problems(env_name, offset, unique)
        for taken in _host_ports(env_name, offset, unique):
            first = users.setdefault(taken.port, taken)
            if first is taken or taken.port > DOCKER_PORT_MAX:
                continue
            same_env = first.env == taken.env
            # One problem per pair of services (same environment: fix a service port) or pair of
            # environments (fix a port_offset), not one per colliding port.
            pair = (
                frozenset({f"services.{first.service}", f"services.{taken.service}"})
                if same_env
                else frozenset({f"environments.{first.env}", f"environments.{taken.env}"})
            )
            if pair in reported:
                continue
            reported.add(pair)
            problems.append(_clash(first, taken, gap))
    return problems


def _clash(first: _HostPort, second: _HostPort, gap: int) -> str:
    if first.env == second.env:
        message = SAME_ENV_PORT_CLASH.format(
            port=second.port,
            env=second.env,
            first=first.describe(same_env=True),
            second=second.describe(same_env=True),
        )
        return f"services.{second.service}.port: {message}"
    message = CROSS_ENV_PORT_CLASH.format(
        port=second.port,
        first=first.describe(same_env=False),
        second=second.describe(same_env=False),
        gap=gap,
    )
    return f"environments.{second.env}.port_offset: {message}"


def _port_range_problems(env_name: str, offset: int, ports: Mapping[str, int]) -> list[str]:
    service, port = max(ports.items(), key=lambda item: item[1])
    highest = port + offset + GREEN_SLOT
    if highest <= DOCKER_PORT_MAX:
        return []
    limit = DOCKER_PORT_MAX - GREEN_SLOT - port
    fix = (
        f"choose a port_offset of at most {limit}"
        if limit >= 0
        else f"choose service ports of at most {DOCKER_PORT_MAX - GREEN_SLOT}"
    )
    message = PORT_TOO_HIGH.format(
        service=service,
        port=highest,
        env=env_name,
        detail=f"its green slot: {port} + {offset} + {GREEN_SLOT}",
        fix=fix,
    )
    return [f"environments.{env_name}.port_offset: {message}"]
