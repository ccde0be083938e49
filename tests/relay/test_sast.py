"""Reading SAST reports: bandit's JSON and SARIF 2.1.0 from any other tool (pure)."""

from __future__ import annotations

import json

import pytest

from relay.sast import Finding, SarifError, blocking, parse_bandit, parse_sarif

BANDIT = {
    "results": [
        {
            "filename": "./app.py",
            "line_number": 3,
            "issue_severity": "HIGH",
            "issue_confidence": "HIGH",
            "test_id": "B602",
            "test_name": "subprocess_popen_with_shell_equals_true",
            "issue_text": "subprocess call with shell=True identified",
        }
    ]
}


def sarif(results: list[dict], rules: list[dict] | None = None) -> str:
    driver = {"name": "gosec", "rules": rules or []}
    return json.dumps(
        {"version": "2.1.0", "runs": [{"tool": {"driver": driver}, "results": results}]}
    )


def result(rule: str, level: str | None = None, **extra: object) -> dict:
    found: dict = {
        "ruleId": rule,
        "message": {"text": f"{rule} found"},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": "cmd/main.go"},
                    "region": {"startLine": 42},
                }
            }
        ],
        **extra,
    }
    if level:
        found["level"] = level
    return found


def test_bandit_json_after_log_lines() -> None:
    output = "[main] INFO profile include tests: None\n" + json.dumps(BANDIT)

    assert parse_bandit(output) == [
        Finding(
            "./app.py",
            3,
            "high",
            "high",
            "B602 subprocess_popen_with_shell_equals_true",
            "subprocess call with shell=True identified",
        )
    ]


@pytest.mark.parametrize(
    ("level", "severity"),
    [("error", "high"), ("warning", "medium"), ("note", "low"), ("none", "low")],
)
def test_sarif_level_is_the_severity(level: str, severity: str) -> None:
    (finding,) = parse_sarif(sarif([result("G101", level)]))

    assert finding == Finding("cmd/main.go", 42, severity, "", "G101", "G101 found")


def test_sarif_without_a_level_takes_the_rule_default_then_warning() -> None:
    rules = [{"id": "G204", "name": "Subprocess", "defaultConfiguration": {"level": "error"}}]
    findings = parse_sarif(sarif([result("G204"), result("G999")], rules))

    assert [(f.rule, f.severity) for f in findings] == [
        ("G204 Subprocess", "high"),
        ("G999", "medium"),
    ]


@pytest.mark.parametrize(("score", "severity"), [("9.8", "high"), ("5.0", "medium"), ("2", "low")])
def test_sarif_security_severity_wins_over_the_level(score: str, severity: str) -> None:
    rules = [{"id": "G101", "properties": {"security-severity": score}}]
    (finding,) = parse_sarif(sarif([result("G101", "note")], rules))

    assert finding.severity == severity


def test_sarif_with_no_results_has_no_findings() -> None:
    assert parse_sarif(sarif([])) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [("not json", "not JSON"), ('{"version": "2.1.0"}', "no 'runs' list"), ("[]", "no 'runs'")],
)
def test_a_report_that_is_not_sarif_says_so(text: str, problem: str) -> None:
    with pytest.raises(SarifError, match=problem):
        parse_sarif(text)


@pytest.mark.parametrize(
    ("fail_on", "stopping"),
    [("low", 3), ("medium", 2), ("high", 1), ("never", 0)],
)
def test_blocking_counts_findings_at_or_above_the_threshold(fail_on: str, stopping: int) -> None:
    findings = [Finding("a", 1, severity, "", "R", "m") for severity in ("low", "medium", "high")]

    assert len(blocking(findings, fail_on)) == stopping
