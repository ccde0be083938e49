"""Canary traffic by the AWS Load Balancer Controller, EKS's own way: an Ingress whose rule
forwards to an *action* annotation, `alb.ingress.kubernetes.io/actions.<name>`, which lists the
stable and canary Services as weighted target groups of one ALB listener rule. Exact weights,
set by the controller on the load balancer, whatever the replica counts.

As `gateway_api`, the router knows the object's API only: it is given a store (the Kubernetes
platform's `Cluster`) and an `AlbIngress` (the platform renders the Ingress at a weight).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relay.traffic.gateway_api import RouteStore

TYPE = "alb"
API_VERSION = "networking.k8s.io/v1"
KIND = "Ingress"
ACTIONS = "alb.ingress.kubernetes.io/actions."

Obj = dict[str, Any]


def weighted_action(stable: str, canary: str, port: int, canary_weight: int) -> str:
    """The action annotation's value: forward to both Services' target groups by weight."""
    if not 0 <= canary_weight <= 100:
        raise ValueError(f"a canary weight is a percentage 0..100, got {canary_weight}")
    groups = [
        {"serviceName": stable, "servicePort": str(port), "weight": 100 - canary_weight},
        {"serviceName": canary, "servicePort": str(port), "weight": canary_weight},
    ]
    return json.dumps(
        {
            "type": "forward",
            "forwardConfig": {
                "targetGroups": groups,
                "targetGroupStickinessConfig": {"enabled": False},
            },
        },
        sort_keys=True,
    )


def action_weights(ingress: Obj) -> dict[str, int]:
    """`{"stable": w, "canary": w}` from an Ingress's weighted action annotation."""
    notes = (ingress.get("metadata") or {}).get("annotations") or {}
    for key, value in notes.items():
        if key.startswith(ACTIONS):
            groups = json.loads(value)["forwardConfig"]["targetGroups"]
            return {g["serviceName"].rsplit("-", 1)[-1]: int(g["weight"]) for g in groups}
    return {}


@dataclass(frozen=True)
class AlbIngress:
    """One service's Ingress: where it lives, and the object at a canary weight (percent)."""

    namespace: str
    name: str
    at_weight: Callable[[int], Obj]
    managed: str  # label selector of every Ingress Relay manages for the application


class AlbRouter:
    """A `TrafficRouter` over one service's ALB Ingress."""

    type = TYPE

    def __init__(self, store: RouteStore, ingress: AlbIngress) -> None:
        self.store = store
        self.ingress = ingress

    def ensure_route(self, route: object) -> None:
        """The Ingress with all traffic on the stable Service."""
        self.store.apply(self.ingress.at_weight(0))

    def set_weight(self, service: str, weights: dict[str, int]) -> None:
        self.store.apply(self.ingress.at_weight(weights.get("canary", 0)))

    def mark_healthy(self, service: str, slot: str) -> None:
        """Nothing to do: the target groups follow the pods' readiness."""

    def weights(self, service: str) -> dict[str, int]:
        found = self.store.get(API_VERSION, KIND, self.ingress.namespace, self.ingress.name)
        return action_weights(found) if found is not None else {}

    def stats(self, service: str) -> dict[str, dict[str, str]]:
        return {}  # the ALB's counters are CloudWatch's (analysis.metrics: cloudwatch)

    def verify_weight(self, service: str, weights: dict[str, int]) -> bool | None:
        return self.weights(service) == weights

    def remove_managed_routes(self) -> None:
        namespace = self.ingress.namespace
        for found in self.store.list(
            API_VERSION, KIND, namespace, label_selector=self.ingress.managed
        ):
            self.store.delete(API_VERSION, KIND, namespace, found["metadata"]["name"])
