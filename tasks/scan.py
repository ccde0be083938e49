"""Scan stage: the vulnerability gate on an image's digest.

Findings come from the scan source `relay.yaml` names (`image_scan.source`), for the digest
about to be deployed, independent of where the image was pushed: ECR's scan of
`<app>/<service>@<digest>` in the account and region of the AWS credentials. The gate runs
after an image is pushed or reused and before it is deployed to dev, and again before a
promotion deploys anything: findings are published after a scan, so a digest that passed dev
can be stopped on its way to production.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from blocks.aws import aws_client
from relay.aws.ecr import ScanVerdict, judge_findings, scan_findings, severity_counts
from relay.errors import Refusals, StageFailed, TerminalError
from relay.manifest import ImageScan
from tasks.record import artifact_key
from tasks.support.retry import on_transient

# How long a gate waits for a scan it started (or one still running after a push).
SCAN_WAIT_SECONDS = 120


@task(
    name="check-image-scan",
    cache_policy=NO_CACHE,
    **on_transient(3, [2, 10, 30]),
)
def check_image_scan(
    image_scan: ImageScan, app: str, service: str, image: str
) -> ScanVerdict | None:
    """Judge the scan findings of `image` (`<registry>/<repository>@sha256:...`).

    Returns:
        The verdict, or None when `image_scan.source` is "none".

    Raises:
        StageFailed: findings at or above `image_scan.fail_on` that no current allow entry
            covers; the message names each one and how to proceed.
        TerminalError: the image is not pinned by digest, or not in the ECR repository.
    """
    if image_scan.source == "none":
        return None
    _, _, digest = image.partition("@")
    if not digest.startswith("sha256:"):
        raise TerminalError(
            f"{service}: image {image!r} is not pinned by digest; the scan gate judges the "
            "digest that is deployed, so pass <repository>@sha256:..."
        )
    repository = f"{app}/{service}"
    findings = scan_findings(aws_client("ecr"), repository, digest, SCAN_WAIT_SECONDS)
    verdict = judge_findings(
        findings, image_scan.fail_on, image_scan.allow, datetime.now(UTC).date()
    )
    _publish(app, service, digest, image_scan, verdict)
    counts = ", ".join(f"{n} {severity}" for severity, n in severity_counts(verdict).items())
    get_run_logger().info(
        "%s@%s: %s (ECR %s); threshold %s: %s",
        service,
        digest[:19],
        counts or "no findings",
        repository,
        image_scan.fail_on,
        "passed" if verdict.passed else f"{len(verdict.blocking)} over it",
    )
    if not verdict.passed:
        raise StageFailed(_failure(service, repository, digest, image_scan, verdict))
    return verdict


def check_image_scans(image_scan: ImageScan, app: str, images: list[tuple[str, str]]) -> None:
    """`check_image_scan` for each `(service, image)`, then one error naming every image
    that may not go further: a promotion is refused as a whole, before anything is deployed,
    and whoever fixes it sees all the work at once."""
    refusals = Refusals("the image scan gate refused; nothing was deployed")
    for service, image in images:
        with refusals.check():
            check_image_scan(image_scan, app, service, image)
    refusals.raise_if_any()


def _failure(
    service: str, repository: str, digest: str, image_scan: ImageScan, verdict: ScanVerdict
) -> str:
    lines = [
        f"{service}: image {digest} has {len(verdict.blocking)} finding(s) at or above "
        f"{image_scan.fail_on.upper()} (ECR scan of {repository}):"
    ]
    for row in verdict.blocking:
        note = f" ({row.note})" if row.note else ""
        lines.append(f"  {row.finding.id} {row.finding.severity} {row.finding.package}{note}")
    first = verdict.blocking[0].finding.id
    lines.append(
        "fix them (a patched base image or package, then a new commit), or accept one for a "
        "while in relay.yaml under image_scan.allow: "
        f"{{id: {first}, reason: <why it is safe>, until: YYYY-MM-DD}}"
    )
    return "\n".join(lines)


def _publish(
    app: str, service: str, digest: str, image_scan: ImageScan, verdict: ScanVerdict
) -> None:
    rows = [
        {
            "finding": row.finding.id,
            "severity": row.finding.severity,
            "package": row.finding.package,
            "over threshold": "yes" if row.over_threshold else "no",
            "allowed": ("yes: " if row.allowed else "no: " if row.note else "no") + row.note,
        }
        for row in verdict.rows
    ]
    create_table_artifact(
        key=artifact_key(app, service, "image-scan"),
        table=rows,
        description=(
            f"{service} `{digest}`: threshold {image_scan.fail_on}, "
            f"{'passed' if verdict.passed else 'refused'}"
        ),
    )
