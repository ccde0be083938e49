from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pytest

from relay import graph
from relay.graph import chain_lengths, dependents, find_cycles, restricted, topological_order, waves

Deps = Mapping[str, Sequence[str]]

SHOP: Deps = {
    "gateway": ["orders", "payments"],
    "orders": ["inventory", "payments"],
    "inventory": [],
    "payments": [],
}


@pytest.mark.parametrize(
    ("deps", "cycles"),
    [
        pytest.param({}, [], id="empty"),
        pytest.param(SHOP, [], id="acyclic"),
        pytest.param({"a": ["a"]}, [["a", "a"]], id="self-loop"),
        pytest.param(
            {"orders": ["inventory"], "inventory": ["orders"]},
            [["orders", "inventory", "orders"]],
            id="two-cycle-in-mapping-order",
        ),
        pytest.param(
            {"inventory": ["orders"], "orders": ["inventory"]},
            [["inventory", "orders", "inventory"]],
            id="starts-where-the-mapping-starts",
        ),
        pytest.param(
            {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]},
            [["a", "b", "c", "a"]],
            id="three-cycle-with-a-consumer",
        ),
        pytest.param(
            {"a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"]},
            [["a", "b", "a"], ["c", "d", "c"]],
            id="two-separate-cycles",
        ),
        pytest.param(
            {"a": ["b", "c"], "b": ["a"], "c": ["a"]},
            [["a", "b", "a"], ["a", "c", "a"]],
            id="two-cycles-through-one-service",
        ),
        pytest.param({"a": ["ghost"], "ghost2": ["a"]}, [], id="unknown-names-ignored"),
        pytest.param({"a": ["b", "b"], "b": ["a"]}, [["a", "b", "a"]], id="repeated-edge-once"),
    ],
)
def test_find_cycles(deps: Deps, cycles: list[list[str]]) -> None:
    assert find_cycles(deps) == cycles


@pytest.mark.parametrize(
    ("deps", "order"),
    [
        pytest.param({}, [], id="empty"),
        pytest.param(SHOP, ["inventory", "payments", "orders", "gateway"], id="shop"),
        pytest.param({"c": [], "b": [], "a": []}, ["a", "b", "c"], id="ties-alphabetical"),
        pytest.param(
            {"z": [], "a": ["z"], "m": []},
            ["m", "z", "a"],
            id="alphabetical-among-ready-only",
        ),
        pytest.param({"a": ["ghost"], "b": ["a"]}, ["a", "b"], id="unknown-names-ignored"),
    ],
)
def test_topological_order(deps: Deps, order: list[str]) -> None:
    assert topological_order(deps) == order


@pytest.mark.parametrize(
    ("deps", "expected"),
    [
        pytest.param({}, [], id="empty"),
        pytest.param(SHOP, [["inventory", "payments"], ["orders"], ["gateway"]], id="shop"),
        pytest.param({"b": [], "a": []}, [["a", "b"]], id="one-sorted-wave"),
        pytest.param(
            {"d": ["a", "c"], "c": ["b"], "b": ["a"], "a": []},
            [["a"], ["b"], ["c"], ["d"]],
            id="chain",
        ),
        pytest.param({"a": ["ghost"]}, [["a"]], id="unknown-names-ignored"),
    ],
)
def test_waves(deps: Deps, expected: list[list[str]]) -> None:
    assert waves(deps) == expected


@pytest.mark.parametrize("order_of", [topological_order, waves])
@pytest.mark.parametrize(
    ("deps", "message"),
    [
        ({"a": ["b"], "b": ["a"], "c": []}, "dependency cycle a -> b -> a"),
        ({"a": ["a"]}, "dependency cycle a -> a"),
    ],
)
def test_cycles_cannot_be_ordered(
    order_of: Callable[[Deps], object], deps: Deps, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        order_of(deps)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("inventory", {"orders", "gateway"}, id="transitive"),
        pytest.param("payments", {"orders", "gateway"}, id="direct-and-transitive"),
        pytest.param("gateway", set(), id="nobody-depends-on-it"),
        pytest.param("ghost", set(), id="unknown-name"),
    ],
)
def test_dependents(name: str, expected: set[str]) -> None:
    assert dependents(SHOP, name) == expected


def test_dependents_in_a_cycle_never_include_the_service_itself() -> None:
    assert dependents({"a": ["b"], "b": ["a"], "c": ["a"]}, "a") == {"b", "c"}


SHOP = {"gateway": ["orders"], "orders": ["inventory", "payments"], "inventory": [], "payments": []}
PATHS = {s: f"services/{s}" for s in SHOP}


@pytest.mark.parametrize(
    ("files", "changed", "dependents"),
    [
        (["services/payments/app.py"], ["payments"], ["orders", "gateway"]),
        (["services/gateway/Dockerfile"], ["gateway"], []),
        (["services/inventory/a.py", "services/orders/b.py"], ["inventory", "orders"], ["gateway"]),
        (["README.md", "relay.yaml"], [], []),
        (["services/payments-v2/app.py"], [], []),  # a prefix of a name is not the service
    ],
)
def test_change_impact(files: list[str], changed: list[str], dependents: list[str]) -> None:
    touched = graph.services_touched(PATHS, files)
    assert graph.impact(SHOP, touched) == (changed, dependents)


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        (["gateway", "inventory"], {"gateway": ["inventory"], "inventory": []}),
        (["gateway", "orders"], {"gateway": ["orders"], "orders": []}),
        (
            ["gateway", "payments", "inventory"],
            {"gateway": ["inventory", "payments"], "payments": [], "inventory": []},
        ),
        (["inventory", "payments"], {"inventory": [], "payments": []}),
        (["gateway"], {"gateway": []}),
    ],
)
def test_restricted_keeps_the_order_through_services_left_out(
    keep: list[str], expected: dict[str, list[str]]
) -> None:
    chain = {
        "gateway": ["orders"],
        "orders": ["inventory", "payments"],
        "inventory": [],
        "payments": [],
    }
    assert restricted(chain, keep) == expected


def test_the_longest_chain_of_consumers_goes_first() -> None:
    deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b"], "e": []}
    assert chain_lengths(deps) == {"a": 3, "b": 2, "c": 1, "d": 1, "e": 1}
