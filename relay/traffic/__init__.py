"""Traffic routers: what sends a service's requests to its old or new version.

A router splits one service's traffic between two tracks by weight (the docker platform's
slots `blue`/`green`, the Kubernetes platform's `stable`/`canary`). Blue/green is a switch of
weights; canary is a series of weights. The providers:

- `haproxy` (docker platform): one HAProxy per application environment, weights through its
  runtime API, exact.
- `gateway_api` (Kubernetes, where the HTTPRoute CRD is served): an HTTPRoute's backend
  weights, exact.
- `replica_ratio` (Kubernetes, anywhere): the two tracks' pod counts, coarse.
- `alb` (EKS with the AWS Load Balancer Controller): an Ingress's weighted target groups, exact.

Only `make_router` knows every provider; platforms ask it for theirs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from relay.traffic.alb import AlbIngress, AlbRouter
from relay.traffic.gateway_api import GatewayApiRouter, HttpRoute, RouteStore
from relay.traffic.haproxy import HAProxyRouter, Route
from relay.traffic.replica_ratio import Pods, ReplicaRatioRouter

__all__ = [
    "PROVIDERS",
    "AlbIngress",
    "AlbRouter",
    "GatewayApiRouter",
    "HAProxyRouter",
    "HttpRoute",
    "Pods",
    "ReplicaRatioRouter",
    "Route",
    "RouteStore",
    "TrafficRouter",
    "make_router",
]

PROVIDERS = (HAProxyRouter.type, GatewayApiRouter.type, ReplicaRatioRouter.type, AlbRouter.type)


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


def make_router(
    kind: str,
    *,
    name: str = "",
    home: Path | None = None,
    store: RouteStore | None = None,
    route: HttpRoute | None = None,
    pods: Pods | None = None,
    labels: dict[str, str] | None = None,
    ingress: AlbIngress | None = None,
) -> TrafficRouter:
    """The router of `kind`, from what that provider needs.

    - `haproxy`: `name`, the application environment (such as 'shop-dev'), and `home`, where
      its configuration, socket and state live; `labels` (app, environment) for its
      Prometheus target;
    - `gateway_api`: the `store` holding HTTPRoutes and the service's `route`;
    - `replica_ratio`: the service's `pods`;
    - `alb`: the `store` holding Ingresses and the service's `ingress`.

    Raises:
        ValueError: `kind` is not a provider, or what it needs is missing.
    """
    if kind == HAProxyRouter.type:
        if not name or home is None:
            raise ValueError("the haproxy router needs name= (such as 'shop-dev') and home=")
        return HAProxyRouter(name=name, home=home, labels=labels)
    if kind == GatewayApiRouter.type:
        if store is None or route is None:
            raise ValueError("the gateway_api router needs store= and route=")
        return GatewayApiRouter(store, route)
    if kind == ReplicaRatioRouter.type:
        if pods is None:
            raise ValueError("the replica_ratio router needs pods=")
        return ReplicaRatioRouter(pods)
    if kind == AlbRouter.type:
        if store is None or ingress is None:
            raise ValueError("the alb router needs store= and ingress=")
        return AlbRouter(store, ingress)
    raise ValueError(f"traffic router {kind!r} is not known; use one of: {', '.join(PROVIDERS)}")
