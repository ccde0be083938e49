"""relay.errors: the exception tree's texts are masked; Refusals raise every refusal once."""

from __future__ import annotations

import pytest

from relay.errors import Refusals, StageFailed, TerminalError, TransientError


def test_every_refusal_is_named_once_at_the_end() -> None:
    refusals = Refusals("the gate refused; nothing was deployed")
    for name in ("orders", "payments", "gateway"):
        with refusals.check():
            if name != "payments":
                raise StageFailed(f"{name}: 1 finding\nsecond line of {name}")
    with pytest.raises(StageFailed) as raised:
        refusals.raise_if_any()
    assert str(raised.value).splitlines() == [
        "the gate refused; nothing was deployed:",
        "  orders: 1 finding",
        "  second line of orders",
        "  gateway: 1 finding",
        "  second line of gateway",
    ]


def test_bad_input_among_them_makes_it_terminal_and_nothing_is_quiet() -> None:
    refusals = Refusals("refused")
    with refusals.check():
        raise StageFailed("a finding")
    with refusals.check():
        raise TerminalError("a missing secret")
    with pytest.raises(TerminalError, match="a finding\n  a missing secret"):
        refusals.raise_if_any()
    with pytest.raises(TransientError), Refusals("x").check():
        raise TransientError("the network: not a refusal, it propagates")
    Refusals("nothing refused").raise_if_any()


def test_one_cause_shared_by_several_items_is_said_once() -> None:
    """Every service of an environment reads its one secret: a missing secret is one line."""
    refusals = Refusals("configuration for dev is incomplete; nothing was deployed")
    for _ in ("orders", "payments"):
        with refusals.check():
            raise TerminalError("secret 'dev-config' not found")
    with pytest.raises(TerminalError) as raised:
        refusals.raise_if_any()
    assert str(raised.value).splitlines() == [
        "configuration for dev is incomplete; nothing was deployed:",
        "  secret 'dev-config' not found",
    ]
