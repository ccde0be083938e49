"""Ledger records for tests: one service of one app, versions named by a hex digit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from relay.ledger import Outcome, Record

T0 = datetime(2026, 5, 9, 7, 30, tzinfo=UTC)


def digest(char: str) -> str:
    return "sha256:" + char * 64


def record(version: str = "a", **changes: Any) -> Record:
    """A record of shop/orders in dev; `version` is one hex digit naming digest, commit and tree."""
    fields: dict[str, Any] = {
        "app": "shop",
        "service": "orders",
        "environment": "dev",
        "image": f"127.0.0.1:5000/shop/orders@{digest(version)}",
        "commit": version * 40,
        "tree": version * 40,
        "strategy": "rolling",
        "outcome": Outcome.SUCCEEDED,
        "started_at": T0,
        "ended_at": T0 + timedelta(minutes=2),
    }
    return Record(**{**fields, **changes})
