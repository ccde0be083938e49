"""`make_router`, the one place that knows every traffic provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.traffic import (
    PROVIDERS,
    GatewayApiRouter,
    HAProxyRouter,
    Pods,
    ReplicaRatioRouter,
    make_router,
)


def test_every_provider_is_made_from_what_it_needs(short_tmp: Path) -> None:
    pods = Pods(2, scale=lambda track, n: None, replicas=lambda track: 0)

    haproxy = make_router("haproxy", name="shop-dev", home=short_tmp)
    replicas = make_router("replica_ratio", pods=pods)

    assert isinstance(haproxy, HAProxyRouter) and haproxy.type == "haproxy"
    assert isinstance(replicas, ReplicaRatioRouter)
    assert set(PROVIDERS) == {"haproxy", GatewayApiRouter.type, "replica_ratio", "alb"}


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("haproxy", "the haproxy router needs name= .* and home="),
        ("gateway_api", "the gateway_api router needs store= and route="),
        ("replica_ratio", "the replica_ratio router needs pods="),
        ("alb", "the alb router needs store= and ingress="),
        ("nginx", "traffic router 'nginx' is not known; use one of: haproxy, gateway_api, replica"),
    ],
)
def test_a_router_without_what_it_needs_is_refused_by_name(kind: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_router(kind)
