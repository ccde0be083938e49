"""Canary traffic by Gateway API: an HTTPRoute whose two backendRefs, the service's stable and
canary Services, carry the weights. Exact weights, whatever the replica counts, wherever a
gateway or mesh implements the route.

The router knows the route's API, not how a platform renders or applies objects: it is given
a `RouteStore` (the Kubernetes platform's `Cluster` is one) and an `HttpRoute` (the platform
renders the object at a weight), so `relay.traffic` never imports `relay.platforms`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

TYPE = "gateway_api"
API_VERSION = "gateway.networking.k8s.io/v1"
KIND = "HTTPRoute"

Obj = dict[str, Any]


class RouteStore(Protocol):
    """Where HTTPRoutes live: apply one, read one, list and delete them."""

    def apply(self, obj: Obj, *, dry_run: bool = False) -> Obj: ...

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None: ...

    def list(self, api_version: str, kind: str, namespace: str, **selectors: str) -> list[Obj]: ...

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None: ...


@dataclass(frozen=True)
class HttpRoute:
    """One service's HTTPRoute: where it lives, and the object at a canary weight (percent)."""

    namespace: str
    name: str
    at_weight: Callable[[int], Obj]
    managed: str  # label selector of every route Relay manages for the application


def canary_pods(total: int, weight: int) -> int:
    """Pods for a canary taking `weight`% of traffic: capacity in proportion, at least one."""
    if total < 1:
        raise ValueError(f"a service runs at least 1 replica, got {total}")
    if not 0 <= weight <= 100:
        raise ValueError(f"a canary weight is a percentage 0..100, got {weight}")
    return max(1, math.ceil(total * weight / 100))


class GatewayApiRouter:
    """A `TrafficRouter` over one service's HTTPRoute."""

    type = TYPE

    def __init__(self, store: RouteStore, route: HttpRoute) -> None:
        self.store = store
        self.route = route

    def ensure_route(self, route: object) -> None:
        """The HTTPRoute with all traffic on the stable Service (an interrupted canary's
        traffic is taken back)."""
        self.store.apply(self.route.at_weight(0))

    def set_weight(self, service: str, weights: dict[str, int]) -> None:
        self.store.apply(self.route.at_weight(weights.get("canary", 0)))

    def mark_healthy(self, service: str, slot: str) -> None:
        """Nothing to do: the Services' endpoints follow pod readiness."""

    def weights(self, service: str) -> dict[str, int]:
        found = self.store.get(API_VERSION, KIND, self.route.namespace, self.route.name)
        if found is None:
            return {}
        refs = found["spec"]["rules"][0]["backendRefs"]
        return {ref["name"].rsplit("-", 1)[-1]: int(ref.get("weight", 1)) for ref in refs}

    def stats(self, service: str) -> dict[str, dict[str, str]]:
        return {}  # the route has no counters; the gateway's metrics are not read here

    def verify_weight(self, service: str, weights: dict[str, int]) -> bool | None:
        return self.weights(service) == weights

    def remove_managed_routes(self) -> None:
        namespace = self.route.namespace
        for found in self.store.list(
            API_VERSION, KIND, namespace, label_selector=self.route.managed
        ):
            self.store.delete(API_VERSION, KIND, namespace, found["metadata"]["name"])
