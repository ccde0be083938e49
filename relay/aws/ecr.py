"""Amazon ECR: the repository images are pushed to, Docker's login, and the scan findings that
gate an image's way to production.

Two roles are kept apart on purpose. `relay.yaml`'s `registry` says where images are pushed
(an ECR address, or any other registry); `image_scan.source: ecr` says that ECR's scan of the
image's digest decides whether it may go further. So a pipeline can push to the local registry
and still be gated by ECR's findings for the same digest (as the tests do), or push to ECR and
not gate at all.

Everything here takes a boto3 ECR client made by the caller; `judge_findings` is pure.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from relay import redaction
from relay.allowlist import allowance
from relay.aws.errors import classify, code_of
from relay.errors import TerminalError, TransientError
from relay.manifest import AllowedFinding
from relay.verdicts import GateVerdict

__all__ = [
    "SEVERITIES",
    "Finding",
    "JudgedFinding",
    "RepositoryChange",
    "ScanVerdict",
    "docker_auth",
    "ensure_repository",
    "judge_findings",
    "parse_ecr_address",
    "scan_findings",
]

_ADDRESS = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$")

# Most severe first. ECR's enhanced scanning says UNTRIAGED where basic scanning says UNDEFINED:
# both mean "not rated", which ranks below every rated severity.
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)} | {"UNTRIAGED": 5}

FailOn = Literal["critical", "high", "medium", "low", "informational", "never"]

# Error codes that retrying can fix; anything else from AWS is an answer, not an accident.
# Scan states that waiting will not change.
_UNSCANNABLE = {"FAILED", "UNSUPPORTED_IMAGE", "SCAN_ELIGIBILITY_EXPIRED", "FINDINGS_UNAVAILABLE"}


def parse_ecr_address(registry: str) -> tuple[str, str] | None:
    """`(account, region)` when `registry` is an ECR address, such as
    `123456789012.dkr.ecr.eu-west-1.amazonaws.com`; None for any other registry."""
    match = _ADDRESS.match(registry)
    return (match["account"], match["region"]) if match else None


# --- repository and login -------------------------------------------------------------------


@dataclass(frozen=True)
class RepositoryChange:
    """What `ensure_repository` did, in words for the run's log."""

    repository: str
    created: bool
    fixed: tuple[str, ...]

    def __str__(self) -> str:
        if self.created:
            return f"created ECR repository {self.repository} (immutable tags, scan on push)"
        if self.fixed:
            return f"ECR repository {self.repository}: {'; '.join(self.fixed)}"
        return f"ECR repository {self.repository} is set up (immutable tags, scan on push)"


def ensure_repository(client: Any, name: str) -> RepositoryChange:
    """Make `name` exist with immutable tags and scan on push.

    Immutable tags are what makes a tag a fact: `tree-<hash>` and the commit SHA can then never
    point at another digest. Scan on push gives every pushed digest findings without anyone
    asking. A repository someone made by hand with other settings is put right, and the change
    is returned so the caller can say so, rather than silently gating on a repository that
    never scans.
    """
    try:
        _call(
            client.create_repository,
            repositoryName=name,
            imageTagMutability="IMMUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
        )
        return RepositoryChange(name, created=True, fixed=())
    except ClientError as exc:
        if _code(exc) != "RepositoryAlreadyExistsException":
            raise _terminal(exc, f"cannot create ECR repository {name!r}") from None
    found = _call(client.describe_repositories, repositoryNames=[name])["repositories"][0]
    fixed = []
    if found.get("imageTagMutability") != "IMMUTABLE":
        _call(
            client.put_image_tag_mutability,
            repositoryName=name,
            imageTagMutability="IMMUTABLE",
        )
        fixed.append(f"tags were {found.get('imageTagMutability')}, now IMMUTABLE")
    if not found.get("imageScanningConfiguration", {}).get("scanOnPush"):
        _call(
            client.put_image_scanning_configuration,
            repositoryName=name,
            imageScanningConfiguration={"scanOnPush": True},
        )
        fixed.append("scan on push was off, now on")
    return RepositoryChange(name, created=False, fixed=tuple(fixed))


def docker_auth(client: Any) -> dict[str, str]:
    """Docker credentials for the ECR registry of the client's account and region:
    `{"username", "password", "registry"}`, the shape of the docker SDK's `auth_config`.

    The token is valid for 12 hours and is as good as a password, so it is registered for
    masking (`relay.redaction`) before it goes anywhere.
    """
    data = _call(client.get_authorization_token)["authorizationData"][0]
    token = str(data["authorizationToken"])
    redaction.register([token])
    username, _, password = base64.b64decode(token).decode().partition(":")
    redaction.register([password])
    registry = str(data.get("proxyEndpoint", "")).removeprefix("https://")
    return {"username": username, "password": password, "registry": registry}


# --- scan findings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One vulnerability in an image, the same whether ECR's basic or enhanced scanning found
    it."""

    id: str
    severity: str
    package: str
    description: str = ""


def scan_findings(
    client: Any,
    repository: str,
    digest: str,
    wait_seconds: float = 60,
    poll_seconds: float = 2,
) -> list[Finding]:
    """The findings of ECR's scan of `repository@digest`.

    An image without a scan yet (pushed before scan on push was on, or copied in) gets one
    started; a scan in progress is waited for up to `wait_seconds`, since a gate that judged an
    unfinished scan would pass images nobody looked at.

    Raises:
        TerminalError: the image is not in that ECR repository, or the scan cannot be done.
        TransientError: AWS unreachable or throttling, or the scan still running after
            `wait_seconds` (another try may find it done).
    """
    image_id = {"imageDigest": digest}
    deadline = time.monotonic() + wait_seconds
    started = False
    while True:
        try:
            pages = _describe_all(client, repository, image_id)
        except ClientError as exc:
            code = _code(exc)
            if code in {"ImageNotFoundException", "RepositoryNotFoundException"}:
                raise TerminalError(
                    f"image {digest} is not in the ECR repository {repository!r} "
                    f"({_where(client)}); ECR can only scan what it holds, so the image must be "
                    f"pushed to (or copied into) that ECR repository before image_scan can "
                    f"judge it"
                ) from None
            if code != "ScanNotFoundException":
                what = f"cannot read scan findings of {repository}@{digest}"
                raise _terminal(exc, what) from None
            if not started:
                _start_scan(client, repository, image_id)
                started = True
            pages = []
        status = pages[0].get("imageScanStatus", {}) if pages else {"status": "IN_PROGRESS"}
        state = status.get("status", "")
        if state in {"COMPLETE", "ACTIVE"}:
            return [_finding(raw) for page in pages for raw in _raw_findings(page)]
        if state in _UNSCANNABLE:
            raise TerminalError(
                f"ECR could not scan {repository}@{digest}: {state} "
                f"({status.get('description', 'no description')}); fix the image or the "
                "repository's scanning, or set image_scan.source: none to stop gating on it"
            )
        if time.monotonic() >= deadline:
            raise TransientError(
                f"ECR's scan of {repository}@{digest} is still {state or 'pending'} after "
                f"{wait_seconds:g} s"
            )
        time.sleep(poll_seconds)


def _describe_all(client: Any, repository: str, image_id: dict[str, str]) -> list[dict[str, Any]]:
    pages = []
    request: dict[str, Any] = {"repositoryName": repository, "imageId": image_id}
    while True:
        page = _call(client.describe_image_scan_findings, **request)
        pages.append(page)
        if not page.get("nextToken"):
            return pages
        request["nextToken"] = page["nextToken"]


def _start_scan(client: Any, repository: str, image_id: dict[str, str]) -> None:
    try:
        _call(client.start_image_scan, repositoryName=repository, imageId=image_id)
    except ClientError as exc:
        # Basic scanning allows one scan per image a day: one was done, so read it.
        if _code(exc) != "LimitExceededException":
            raise _terminal(exc, f"cannot start a scan of {repository}") from None


def _raw_findings(page: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    found = page.get("imageScanFindings") or {}
    yield from found.get("findings") or []
    for raw in found.get("enhancedFindings") or []:
        # Enhanced findings live on: CLOSED ones are fixed, SUPPRESSED ones were waived in
        # Amazon Inspector. Only ACTIVE ones are about the image as it is.
        if raw.get("status", "ACTIVE") == "ACTIVE":
            yield raw


def _finding(raw: Mapping[str, Any]) -> Finding:
    severity = str(raw.get("severity") or "UNDEFINED").upper()
    if "packageVulnerabilityDetails" in raw or "findingArn" in raw:  # enhanced
        details = raw.get("packageVulnerabilityDetails") or {}
        packages = details.get("vulnerablePackages") or []
        package = ", ".join(
            f"{p.get('name', '?')} {p.get('version', '')}".strip() for p in packages
        )
        ident = details.get("vulnerabilityId") or raw.get("title") or raw.get("findingArn", "?")
        return Finding(str(ident), severity, package, str(raw.get("description", "")))
    attributes = {a.get("key"): a.get("value", "") for a in raw.get("attributes") or []}
    package = f"{attributes.get('package_name', '')} {attributes.get('package_version', '')}"
    return Finding(
        str(raw.get("name", "?")), severity, package.strip(), str(raw.get("description", ""))
    )


# --- the verdict ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgedFinding:
    """A finding with what the gate made of it. `note` says why an allow entry did or did not
    count."""

    finding: Finding
    over_threshold: bool
    allowed: bool
    note: str = ""

    @property
    def blocking(self) -> bool:
        return self.over_threshold and not self.allowed


ScanVerdict = GateVerdict[JudgedFinding]


def severity_counts(verdict: ScanVerdict) -> dict[str, int]:
    """Findings per severity, most severe first, only those that occur."""
    counts: dict[str, int] = {}
    for row in verdict.rows:
        counts[row.finding.severity] = counts.get(row.finding.severity, 0) + 1
    return counts


def judge_findings(
    findings: Sequence[Finding],
    fail_on: FailOn,
    allow: Sequence[AllowedFinding],
    today: date,
) -> ScanVerdict:
    """Which findings stop the image: those at `fail_on` or more severe, unless an allow entry
    names them and its `until` is today or later. An expired entry is reported as such, so
    whoever reads the failure knows the exception ran out rather than wondering why a
    "known" finding blocks."""
    threshold = -1 if fail_on == "never" else _RANK[fail_on.upper()]  # -1: nothing is over
    rows = []
    for finding in sorted(findings, key=lambda f: (_rank(f.severity), f.id)):
        over = _rank(finding.severity) <= threshold
        verdict = allowance([finding.id], allow, today)
        rows.append(JudgedFinding(finding, over, verdict.allowed, verdict.note))
    judged = tuple(rows)
    return GateVerdict.of(judged)


def _rank(severity: str) -> int:
    return _RANK.get(severity.upper(), _RANK["UNDEFINED"])


# --- AWS errors -------------------------------------------------------------------------------


def _call(method: Callable[..., Any], **kwargs: Any) -> Any:
    """`method(**kwargs)`, with network failures and throttling as TransientError (the rules of
    `relay.aws.errors`); other ClientErrors are left to the caller, which knows what their
    codes mean here, and reads the rest with `_terminal`."""
    try:
        return method(**kwargs)
    except ClientError as exc:
        judged = classify(exc, "AWS ECR")
        if isinstance(judged, TransientError):
            raise judged from exc
        raise
    except BotoCoreError as exc:
        raise classify(exc, "AWS ECR unreachable") from exc


def _code(exc: ClientError) -> str:
    return code_of(exc)


def _terminal(exc: ClientError, what: str) -> TerminalError | TransientError:
    return classify(
        exc, what, f"grant the pipeline's role ecr:{exc.operation_name} on the repository"
    )


def _where(client: Any) -> str:
    return f"region {client.meta.region_name}"
