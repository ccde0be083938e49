"""Deployment strategies as subflows: rolling, blue_green, canary (one flow per file).

Each asks `relay.strategies` for its plan and runs it with `execute.execute_plan`.
`strategy_flow` is the one place that maps a manifest's `strategy:` to its flow.
"""

from __future__ import annotations

from typing import Any

from prefect import Flow

from flows.strategies.blue_green import blue_green
from flows.strategies.canary import canary
from flows.strategies.rolling import rolling

FLOWS: dict[str, Flow[..., Any]] = {"rolling": rolling, "blue_green": blue_green, "canary": canary}


def strategy_flow(name: str) -> Flow[..., Any]:
    try:
        return FLOWS[name]
    except KeyError:
        raise ValueError(
            f"strategy {name!r} is not known; use one of: {', '.join(FLOWS)}"
        ) from None
