"""Judging static-analysis findings against the manifest's threshold (pure, no I/O).

Two report formats are read. Bandit's `-f json` (the default command) is read from the
command's output. Any other tool, for any language, is declared in relay.yaml with the SARIF
2.1.0 file it writes (`services.<name>.sast.sarif`): SARIF is what nearly every analyser can
write (semgrep, gosec, eslint, spotbugs, CodeQL), so one reader covers them all. A command
with neither is judged by its exit code alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SEVERITIES", "Finding", "SarifError", "blocking", "parse_bandit", "parse_sarif"]

SEVERITIES = ("low", "medium", "high")

# SARIF `level` -> Relay's severity. "none" is informational: below every threshold but "low".
_SARIF_LEVELS = {"error": "high", "warning": "medium", "note": "low", "none": "low"}
# SARIF's default level when neither the result nor its rule says (SARIF 2.1.0, 3.27.10).
_SARIF_DEFAULT_LEVEL = "warning"


@dataclass(frozen=True)
class Finding:
    """One static-analysis finding, whichever tool reported it."""

    file: str
    line: int
    severity: str
    confidence: str
    rule: str
    message: str


class SarifError(ValueError):
    """A SARIF file that is not SARIF 2.1.0 JSON; the message says what is wrong."""


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


def parse_sarif(text: str) -> list[Finding]:
    """Findings from a SARIF 2.1.0 log: every result of every run.

    A result's severity is its `level` (error → high, warning → medium, note/none → low), else
    its rule's `defaultConfiguration.level`, else SARIF's default, warning. Where the result or
    its rule carries GitHub's numeric `security-severity` (CVSS-like, 0-10), that wins, since
    it is what a security tool meant by "how bad" rather than how loudly to report.

    Raises:
        SarifError: not JSON, or not shaped like SARIF (no `runs` list).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SarifError(f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise SarifError("no 'runs' list; write a SARIF 2.1.0 log ({'version': '2.1.0', 'runs'})")
    findings: list[Finding] = []
    for run in data["runs"]:
        if not isinstance(run, dict):
            continue
        driver = _mapping(_mapping(run.get("tool")).get("driver"))
        rules = {
            str(rule.get("id")): rule
            for rule in driver.get("rules") or []
            if isinstance(rule, dict)
        }
        for result in run.get("results") or []:
            if isinstance(result, dict):
                findings.append(_sarif_finding(result, rules, str(driver.get("name", ""))))
    return findings


def _sarif_finding(result: Mapping[str, Any], rules: Mapping[str, Any], tool: str) -> Finding:
    rule_id = str(result.get("ruleId") or _mapping(result.get("rule")).get("id") or "")
    rule = _mapping(rules.get(rule_id))
    level = str(
        result.get("level")
        or _mapping(rule.get("defaultConfiguration")).get("level")
        or _SARIF_DEFAULT_LEVEL
    )
    severity = (
        _security_severity(result) or _security_severity(rule) or _SARIF_LEVELS.get(level, "medium")
    )
    location = _mapping(_first(result.get("locations")))
    physical = _mapping(location.get("physicalLocation"))
    file = str(_mapping(physical.get("artifactLocation")).get("uri", ""))
    line = _mapping(physical.get("region")).get("startLine", 0)
    message = _mapping(result.get("message")).get("text") or _mapping(
        rule.get("shortDescription")
    ).get("text", "")
    name = str(rule.get("name") or "")
    return Finding(
        file=file,
        line=line if isinstance(line, int) else 0,
        severity=severity,
        confidence="",
        rule=" ".join(part for part in (rule_id, name) if part) or tool,
        message=str(message),
    )


def _security_severity(holder: Mapping[str, Any]) -> str | None:
    raw = _mapping(holder.get("properties")).get("security-severity")
    if not isinstance(raw, str | int | float):
        return None
    try:
        score = float(raw)
    except (TypeError, ValueError):
        return None
    return "high" if score >= 7 else "medium" if score >= 4 else "low"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _first(value: object) -> object:
    return value[0] if isinstance(value, list) and value else None


def blocking(findings: list[Finding], fail_on: str) -> list[Finding]:
    """The findings at or above `fail_on` ('low' | 'medium' | 'high' | 'never')."""
    if fail_on == "never":
        return []
    floor = SEVERITIES.index(fail_on)
    return [
        f for f in findings if f.severity in SEVERITIES and SEVERITIES.index(f.severity) >= floor
    ]
