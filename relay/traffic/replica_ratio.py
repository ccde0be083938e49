"""Canary traffic by replica ratio: where no Gateway API exists, a Service that selects both the
stable and the canary pods splits requests roughly by how many pods each has.

It is coarse: with 2 replicas the smallest canary is 1 pod, half the
pods, so a "10%" step really sends about 50% (`effective_weight` says what a step really does,
and the platform logs it). Give the environment more replicas for finer steps, or install the
Gateway API CRDs (and a mesh or gateway that implements them) for exact weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

TYPE = "replica_ratio"


def split_replicas(total: int, weight: int) -> tuple[int, int]:
    """`(stable, canary)` pods that give the canary about `weight`% of `total` pods.

    The canary gets at least one pod at any weight above 0, and the stable version keeps at
    least one below 100, so both really serve while the weight says both should.

    Raises:
        ValueError: `total` below 1 or `weight` outside 0..100.
    """
    if total < 1:
        raise ValueError(f"a service runs at least 1 replica, got {total}")
    if not 0 <= weight <= 100:
        raise ValueError(f"a canary weight is a percentage 0..100, got {weight}")
    if weight == 0:
        return total, 0
    if weight == 100:
        return 0, total
    canary = max(1, math.ceil(total * weight / 100))
    if total == 1:
        return 1, 1  # one of each: the only way to split a single replica
    return max(1, total - canary), min(canary, total - 1)


def effective_weight(stable: int, canary: int) -> int:
    """The canary's share of the pods, in whole percent: what a replica ratio really sends."""
    pods = stable + canary
    return round(100 * canary / pods) if pods else 0


@dataclass(frozen=True)
class Pods:
    """One service's two tracks, `stable` and `canary`, as the platform runs them: `total`
    replicas to share, `scale(track, pods)` sets one track's replicas (the platform applies
    the Deployment and waits), `replicas(track)` reads them back."""

    total: int
    scale: Callable[[str, int], None]
    replicas: Callable[[str], int]


class ReplicaRatioRouter:
    """A `TrafficRouter` whose weights are pod counts.

    It has no counters of its own (`stats` is empty) and no route objects to manage.
    """

    type = TYPE

    def __init__(self, pods: Pods) -> None:
        self.pods = pods

    def ensure_route(self, route: object) -> None:
        """Nothing to create: the service's Service selects both tracks."""

    def set_weight(self, service: str, weights: dict[str, int]) -> None:
        """Scale the canary up first, then the stable version down, so capacity never dips."""
        stable, canary = split_replicas(self.pods.total, weights.get("canary", 0))
        self.pods.scale("canary", canary)
        self.pods.scale("stable", stable)

    def mark_healthy(self, service: str, slot: str) -> None:
        """Nothing to do: the Service's endpoints follow pod readiness."""

    def weights(self, service: str) -> dict[str, int]:
        stable, canary = self.pods.replicas("stable"), self.pods.replicas("canary")
        share = effective_weight(stable, canary)
        return {"stable": 100 - share, "canary": share}

    def stats(self, service: str) -> dict[str, dict[str, str]]:
        return {}  # no request counters: see relay.analysis.judge_alarms

    def verify_weight(self, service: str, weights: dict[str, int]) -> bool | None:
        return None  # pods are not requests: there is no weight to verify

    def remove_managed_routes(self) -> None:
        """Nothing to remove."""
