"""Reading JUnit XML test reports (pytest `--junitxml`), for the test-results table."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 (reports written by our own test run)
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CaseResult:
    name: str
    outcome: str  # passed | failed | error | skipped
    seconds: float
    message: str


def read_report(path: Path) -> list[CaseResult]:
    return parse_report(path.read_bytes()) if path.exists() else []


def parse_report(data: bytes) -> list[CaseResult]:
    """The cases of a JUnit XML report; none for an empty or unreadable one (a crashed test
    run writes a partial file: its exit code says what happened)."""
    if not data.strip():
        return []
    try:
        root = ET.fromstring(data)  # noqa: S314
    except ET.ParseError:
        return []
    results = []
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome = "failed" if kind == "failure" else kind
                message = (node.get("message") or "")[:300]
                break
        name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
        results.append(CaseResult(name, outcome, float(case.get("time") or 0), message))
    return results


def with_report(argv: list[str], report: Path) -> list[str]:
    """argv plus `--junitxml` when it runs pytest, so any pytest command gets a results table."""
    if any(part == "pytest" or part.endswith("/pytest") for part in argv):
        return [*argv, f"--junitxml={report}"]
    return argv


def summary(cases: list[CaseResult]) -> str:
    counts: dict[str, int] = {}
    for case in cases:
        counts[case.outcome] = counts.get(case.outcome, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no report"


def results_table(cases: list[CaseResult], argv: list[str], ok: bool) -> list[dict[str, object]]:
    """Rows for a Prefect table artifact; one row for the whole command when there is no report."""
    if not cases:
        return [{"test": " ".join(argv), "outcome": "passed" if ok else "failed"}]
    return [
        {"test": c.name, "outcome": c.outcome, "seconds": round(c.seconds, 3), "message": c.message}
        for c in cases
    ]
