"""SAST stage: static analysis of a service's source, gated by the manifest's threshold."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from relay.commands import run_command
from relay.errors import StageFailed
from relay.sast import Finding, blocking, parse_bandit


@task(name="run-sast", cache_policy=NO_CACHE)
def run_sast(
    service: str, directory: Path, command: list[str], fail_on: str, artifact_key: str
) -> list[Finding]:
    result = run_command(command, cwd=directory, timeout=600)
    findings = parse_bandit(result.output)
    rows = [
        {
            "severity": f.severity,
            "rule": f.rule,
            "where": f"{f.file}:{f.line}",
            "confidence": f.confidence,
            "message": f.message,
        }
        for f in findings
    ] or [{"severity": "-", "rule": "no findings", "where": "", "confidence": "", "message": ""}]
    create_table_artifact(
        key=artifact_key,
        table=rows,
        description=f"SAST findings for {service} (fails on: {fail_on})",
    )
    stopping = blocking(findings, fail_on)
    if stopping:
        listed = "\n".join(
            f"  {f.severity} {f.rule} at {f.file}:{f.line}: {f.message}" for f in stopping
        )
        raise StageFailed(
            f"{service}: {len(stopping)} SAST finding(s) at or above {fail_on}:\n{listed}\n"
            "Fix them, or set services.<name>.sast.fail_on in relay.yaml"
        )
    if not result.ok and not findings:
        raise StageFailed(f"{service}: SAST command {' '.join(command)} failed:\n{result.tail()}")
    return findings
