"""Judging static-analysis findings against the manifest's threshold (pure, no I/O).

Bandit writes JSON; other tools can be declared in relay.yaml, and then only their exit code
counts unless they write SARIF-like JSON bandit-style.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SEVERITIES = ("low", "medium", "high")


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    severity: str
    confidence: str
    rule: str
    message: str


def parse_bandit(output: str) -> list[Finding]:
    """Findings from bandit's `-f json` output (anything before the JSON object is ignored)."""
    start = output.find("{")
    if start < 0:
        return []
    try:
        data, _ = json.JSONDecoder().raw_decode(output[start:])
    except json.JSONDecodeError:
        return []
    return [
        Finding(
            file=str(item.get("filename", "")),
            line=int(item.get("line_number", 0)),
            severity=str(item.get("issue_severity", "")).lower(),
            confidence=str(item.get("issue_confidence", "")).lower(),
            rule=f"{item.get('test_id', '')} {item.get('test_name', '')}".strip(),
            message=str(item.get("issue_text", "")),
        )
        for item in data.get("results", [])
    ]


def blocking(findings: list[Finding], fail_on: str) -> list[Finding]:
    """The findings at or above `fail_on` ('low' | 'medium' | 'high' | 'never')."""
    if fail_on == "never":
        return []
    floor = SEVERITIES.index(fail_on)
    return [
        f for f in findings if f.severity in SEVERITIES and SEVERITIES.index(f.severity) >= floor
    ]
