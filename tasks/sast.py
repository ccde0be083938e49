"""SAST stage: static analysis of a service's source, gated by the manifest's threshold.

It runs where the service's other stages run (its stage image, `tasks.stages`). Bandit's JSON
is read from the command's output; another tool's findings from the SARIF file the manifest
says it writes (`sast.sarif`), copied back out of the container. Without either, the exit code
decides.
"""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect_docker import DockerHost

from relay.errors import StageFailed
from relay.sast import Finding, SarifError, blocking, parse_bandit, parse_sarif
from relay.stages.site import StageSite
from tasks.stages import run_in_site, tool_hint


@task(name="run-sast", cache_policy=NO_CACHE)
def run_sast(
    docker_host: DockerHost,
    service: str,
    site: StageSite,
    command: list[str],
    fail_on: str,
    artifact_key: str,
    sarif: str | None = None,
) -> list[Finding]:
    """Run the SAST command in the service's directory and judge its findings.

    Raises:
        StageFailed: findings at or above `fail_on`; the command failed without a report; or
            the declared SARIF file is missing or unreadable (a gate that cannot read its
            tool's report must not pass).
    """
    result = run_in_site(
        docker_host,
        site,
        command,
        timeout=600,
        files=[sarif] if sarif else [],
        service=service,
        setting="sast.command",
    )
    if sarif is None:
        findings = parse_bandit(result.output)
    else:
        findings = _read_sarif(service, sarif, result.files.get(sarif))
        if findings is None:
            raise StageFailed(
                f"{service}: SAST command {' '.join(command)} exited {result.exit_code} without "
                f"writing {sarif} (services.{service}.sast.sarif) in {result.where}:\n"
                f"{result.tail()}{tool_hint(service, 'sast.command', result)}"
            )
    findings = findings or []
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
        raise StageFailed(
            f"{service}: SAST command {' '.join(command)} failed in {result.where}:\n"
            f"{result.tail()}{tool_hint(service, 'sast.command', result)}"
        )
    return findings


def _read_sarif(service: str, name: str, report: bytes | None) -> list[Finding] | None:
    """The findings in the report, or None when the command did not write it."""
    if report is None:
        return None
    try:
        return parse_sarif(report.decode("utf-8", errors="replace"))
    except SarifError as exc:
        raise StageFailed(f"{service}: SAST report {name} is not SARIF: {exc}") from None
