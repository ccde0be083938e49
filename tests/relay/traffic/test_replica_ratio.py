"""The replica ratio's weight arithmetic, as tables: what a canary step of N% really does to
pods and traffic. Pure functions; tests/relay/platforms/kubernetes runs the same numbers
through a real API server."""

from __future__ import annotations

import pytest

from relay.traffic.replica_ratio import Pods, ReplicaRatioRouter, effective_weight, split_replicas


@pytest.mark.parametrize(
    ("total", "weight", "stable", "canary"),
    [
        (4, 0, 4, 0),  # no canary: every pod stable
        (4, 100, 0, 4),  # promoted: every pod canary
        (4, 25, 3, 1),
        (4, 50, 2, 2),
        (4, 10, 3, 1),  # the smallest canary is one pod: 10% really sends 25%
        (4, 90, 1, 3),  # stable keeps one pod below 100
        (2, 10, 1, 1),
        (1, 10, 1, 1),  # one replica: one of each, the only split there is
        (1, 99, 1, 1),
        (10, 10, 9, 1),
        (10, 33, 6, 4),  # rounded up: the canary gets its share at least
        (10, 99, 1, 9),
    ],
)
def test_split_replicas(total: int, weight: int, stable: int, canary: int) -> None:
    assert split_replicas(total, weight) == (stable, canary)


@pytest.mark.parametrize(("total", "weight"), [(0, 10), (-1, 10), (4, -1), (4, 101)])
def test_split_replicas_refuses_what_cannot_be_split(total: int, weight: int) -> None:
    with pytest.raises(ValueError, match="at least 1 replica|percentage 0..100"):
        split_replicas(total, weight)


@pytest.mark.parametrize(
    ("stable", "canary", "share"),
    [(4, 0, 0), (0, 4, 100), (3, 1, 25), (1, 1, 50), (2, 1, 33), (1, 2, 67), (0, 0, 0)],
)
def test_effective_weight_is_the_canarys_share_of_the_pods(
    stable: int, canary: int, share: int
) -> None:
    assert effective_weight(stable, canary) == share


def test_the_replica_ratio_router_scales_the_canary_up_before_the_stable_version_down() -> None:
    replicas = {"stable": 4, "canary": 0}
    order: list[tuple[str, int]] = []

    def scale(track: str, pods: int) -> None:
        order.append((track, pods))
        replicas[track] = pods

    router = ReplicaRatioRouter(Pods(4, scale=scale, replicas=replicas.__getitem__))
    router.set_weight("orders", {"stable": 90, "canary": 10})

    assert order == [("canary", 1), ("stable", 3)]  # capacity never dips below 4 pods
    assert router.weights("orders") == {"stable": 75, "canary": 25}  # what 10% really is
    assert router.verify_weight("orders", {"stable": 90, "canary": 10}) is None  # not requests
