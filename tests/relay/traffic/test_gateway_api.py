"""The Gateway API router's arithmetic: how many pods a canary needs for its share of the load.
The route itself is applied to a real API server in tests/relay/platforms/kubernetes."""

from __future__ import annotations

import pytest

from relay.traffic.gateway_api import canary_pods


@pytest.mark.parametrize(
    ("total", "weight", "pods"),
    [(4, 0, 1), (4, 10, 1), (4, 25, 1), (4, 26, 2), (4, 100, 4), (10, 33, 4), (1, 50, 1)],
)
def test_canary_pods_carry_their_share_of_the_load(total: int, weight: int, pods: int) -> None:
    assert canary_pods(total, weight) == pods


@pytest.mark.parametrize(("total", "weight"), [(0, 10), (4, -1), (4, 101)])
def test_canary_pods_refuses_what_cannot_be_split(total: int, weight: int) -> None:
    with pytest.raises(ValueError, match="at least 1 replica|percentage 0..100"):
        canary_pods(total, weight)
