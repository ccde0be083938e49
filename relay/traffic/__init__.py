"""Traffic routers: what sends a service's requests to its blue or green slot.

A router owns one public address per service and splits its traffic between two slots by
weight. Blue/green is a switch of weights; canary is a series of weights. Only `make_router`
knows every provider.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from relay.traffic.haproxy import HAProxyRouter, Route

__all__ = ["HAProxyRouter", "Route", "TrafficRouter", "make_router"]


class TrafficRouter(Protocol):
    type: str

    def ensure_route(self, route: Route) -> None: ...

    def set_weight(self, service: str, weights: dict[str, int]) -> None: ...

    def mark_healthy(self, service: str, slot: str) -> None:
        """The slot passed Relay's own health check: route to it without waiting for the
        router's next check (a no-op where the router has none)."""

    def weights(self, service: str) -> dict[str, int]: ...

    def stats(self, service: str) -> dict[str, dict[str, str]]: ...

    def verify_weight(self, service: str, weights: dict[str, int]) -> bool | None: ...

    def remove_managed_routes(self) -> None: ...


def make_router(kind: str, name: str, home: Path) -> TrafficRouter:
    """The router of `kind` for one application environment (`name` such as 'shop-dev')."""
    if kind == HAProxyRouter.type:
        return HAProxyRouter(name=name, home=home)
    raise ValueError(f"traffic router {kind!r} is not known; use one of: {HAProxyRouter.type}")
