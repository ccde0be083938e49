"""Canary traffic by Gateway API: an HTTPRoute whose two backendRefs, the service's stable and
canary Services, carry the weights. Exact weights, whatever the replica counts, wherever a
gateway or mesh implements the route.
"""

from __future__ import annotations

import math

from relay.platforms.kubernetes.cluster import Cluster
from relay.platforms.kubernetes.objects import MANAGER, KubeSpec, http_route

TYPE = "gateway_api"
API_VERSION = "gateway.networking.k8s.io/v1"
KIND = "HTTPRoute"


def canary_pods(total: int, weight: int) -> int:
    """Pods for a canary taking `weight`% of traffic: capacity in proportion, at least one."""
    return max(1, math.ceil(total * weight / 100))


class GatewayApiRouter:
    """A `TrafficRouter` over the HTTPRoute `<service>` of one service's spec."""

    type = TYPE

    def __init__(self, cluster: Cluster, spec: KubeSpec) -> None:
        self.cluster = cluster
        self.spec = spec

    def ensure_route(self, route: object) -> None:
        """The HTTPRoute with all traffic on the stable Service (an interrupted canary's
        traffic is taken back)."""
        self.cluster.apply(http_route(self.spec, 0))

    def set_weight(self, service: str, weights: dict[str, int]) -> None:
        self.cluster.apply(http_route(self.spec, weights.get("canary", 0)))

    def weights(self, service: str) -> dict[str, int]:
        found = self.cluster.get(API_VERSION, KIND, self.spec.namespace, service)
        if found is None:
            return {}
        refs = found["spec"]["rules"][0]["backendRefs"]
        return {ref["name"].rsplit("-", 1)[-1]: int(ref.get("weight", 1)) for ref in refs}

    def stats(self, service: str) -> dict[str, dict[str, str]]:
        return {}  # the route has no counters; the gateway's metrics are not read here

    def verify_weight(self, service: str, weights: dict[str, int]) -> bool | None:
        return self.weights(service) == weights

    def remove_managed_routes(self) -> None:
        selector = f"app.kubernetes.io/managed-by={MANAGER},relay.dev/app={self.spec.app}"
        for route in self.cluster.list(
            API_VERSION, KIND, self.spec.namespace, label_selector=selector
        ):
            self.cluster.delete(API_VERSION, KIND, self.spec.namespace, route["metadata"]["name"])
