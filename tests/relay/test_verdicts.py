"""relay.verdicts: one verdict shape for every security gate (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from relay.verdicts import GateVerdict


@dataclass(frozen=True)
class Row:
    name: str
    blocking: bool


def test_a_gate_passes_unless_a_row_blocks() -> None:
    rows = (Row("a", False), Row("b", True))
    failed = GateVerdict.of(rows)
    assert not failed.passed and failed.blocking == (Row("b", True),)
    assert GateVerdict.of((Row("a", False),)).passed


def test_report_only_passes_and_blocks_nothing_but_keeps_every_row() -> None:
    rows = (Row("a", True),)
    verdict = GateVerdict.of(rows, report_only=True)
    assert verdict.passed and verdict.blocking == () and verdict.rows == rows
