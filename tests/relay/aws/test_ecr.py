"""relay.aws.ecr against the stack's moto server over HTTP (real boto3, real requests), and the
pure verdict as a table.

Images are registered with `put_image` and a well-formed Docker image manifest whose digest is
its sha256, as ECR would store it after a push. Scan results are set through moto's own API
(`/moto-api/static/ecr/scan-finding-results`); without one, moto answers one HIGH finding,
CVE-9999-9999.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import date
from typing import Any

import boto3
import httpx
import pytest

from relay import redaction
from relay.aws.ecr import (
    Finding,
    docker_auth,
    ensure_repository,
    judge_findings,
    parse_ecr_address,
    scan_findings,
    severity_counts,
)
from relay.errors import TerminalError
from relay.manifest import AllowedFinding

pytestmark = pytest.mark.stack

REGION = "us-east-1"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture
def ecr() -> Any:
    return boto3.client("ecr", region_name=REGION)


@pytest.fixture
def repository() -> str:
    return f"ecrtest-{uuid.uuid4().hex[:8]}/svc"


def put_manifest(ecr: Any, repository: str) -> str:
    """Register a unique image in `repository` as ECR holds it after a push; its digest."""
    layer = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 1469,
                "digest": f"sha256:{hashlib.sha256(layer.encode()).hexdigest()}",
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 3370706,
                    "digest": f"sha256:{layer}",
                }
            ],
        },
        indent=3,
    )
    digest = f"sha256:{hashlib.sha256(manifest.encode()).hexdigest()}"
    ecr.put_image(
        repositoryName=repository,
        imageManifest=manifest,
        imageManifestMediaType=MANIFEST_TYPE,
        imageTag="v1",
        imageDigest=digest,
    )
    return digest


def configure_scan(repository: str, digest: str, findings: dict[str, Any]) -> None:
    """The next describe_image_scan_findings of this image answers `findings`."""
    result = {
        "registryId": "123456789012",
        "repositoryName": repository,
        "imageId": {"imageDigest": digest},
        "imageScanStatus": {"status": "COMPLETE", "description": "done"},
        "imageScanFindings": findings,
    }
    response = httpx.post(
        f"{os.environ['AWS_ENDPOINT_URL']}/moto-api/static/ecr/scan-finding-results",
        json={"results": [result], "region": REGION},
    )
    response.raise_for_status()


def basic(name: str, severity: str, package: str = "openssl") -> dict[str, Any]:
    return {
        "name": name,
        "severity": severity,
        "attributes": [
            {"key": "package_name", "value": package},
            {"key": "package_version", "value": "3.0.1"},
        ],
    }


def enhanced(ident: str, severity: str, status: str = "ACTIVE") -> dict[str, Any]:
    return {
        "findingArn": f"arn:aws:inspector2:us-east-1:123456789012:finding/{ident}",
        "severity": severity,
        "status": status,
        "title": f"{ident} - zlib",
        "packageVulnerabilityDetails": {
            "vulnerabilityId": ident,
            "vulnerablePackages": [{"name": "zlib", "version": "1.2.11"}],
        },
    }


# --- addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", ("123456789012", "eu-west-1")),
        ("123456789012.dkr.ecr.us-gov-west-1.amazonaws.com", ("123456789012", "us-gov-west-1")),
        ("127.0.0.1:5000", None),
        ("12345.dkr.ecr.eu-west-1.amazonaws.com", None),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com:443", None),
        ("ghcr.io", None),
    ],
)
def test_parse_ecr_address(registry: str, expected: tuple[str, str] | None) -> None:
    assert parse_ecr_address(registry) == expected


# --- repository and login -----------------------------------------------------------------


def test_ensure_repository_creates_it_immutable_and_scanning(ecr: Any, repository: str) -> None:
    change = ensure_repository(ecr, repository)
    assert change.created and "created" in str(change)
    found = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]
    assert found["imageTagMutability"] == "IMMUTABLE"
    assert found["imageScanningConfiguration"] == {"scanOnPush": True}

    again = ensure_repository(ecr, repository)
    assert not again.created and again.fixed == ()


def test_ensure_repository_puts_a_mutable_repository_right(ecr: Any, repository: str) -> None:
    ecr.create_repository(
        repositoryName=repository,
        imageTagMutability="MUTABLE",
        imageScanningConfiguration={"scanOnPush": False},
    )
    change = ensure_repository(ecr, repository)
    assert not change.created
    assert "tags were MUTABLE, now IMMUTABLE" in str(change)
    assert "scan on push was off, now on" in str(change)
    found = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]
    assert found["imageTagMutability"] == "IMMUTABLE"
    assert found["imageScanningConfiguration"] == {"scanOnPush": True}


def test_docker_auth_decodes_the_token_and_masks_the_password(ecr: Any) -> None:
    auth = docker_auth(ecr)
    assert auth["username"] == "AWS"
    assert auth["password"] and auth["registry"].endswith(".amazonaws.com")
    text = f"login with {auth['password']} failed"
    assert auth["password"] not in redaction.redact(text)
    assert redaction.MASK in redaction.redact(text)


# --- scan findings ------------------------------------------------------------------------


def test_scan_findings_reads_both_shapes(ecr: Any, repository: str) -> None:
    ensure_repository(ecr, repository)
    digest = put_manifest(ecr, repository)
    ecr.start_image_scan(repositoryName=repository, imageId={"imageDigest": digest})
    configure_scan(
        repository,
        digest,
        {
            "findings": [basic("CVE-2024-1111", "HIGH")],
            "enhancedFindings": [
                enhanced("CVE-2024-2222", "CRITICAL"),
                enhanced("CVE-2024-3333", "HIGH", status="CLOSED"),
            ],
        },
    )
    findings = scan_findings(ecr, repository, digest, wait_seconds=10, poll_seconds=0.1)
    assert sorted(findings, key=lambda f: f.id) == [
        Finding("CVE-2024-1111", "HIGH", "openssl 3.0.1"),
        Finding("CVE-2024-2222", "CRITICAL", "zlib 1.2.11"),
    ]


def test_an_image_without_a_scan_gets_one_started_and_waited_for(ecr: Any, repository: str) -> None:
    ensure_repository(ecr, repository)
    digest = put_manifest(ecr, repository)
    configure_scan(repository, digest, {"findings": [basic("CVE-2024-4444", "LOW")]})
    findings = scan_findings(ecr, repository, digest, wait_seconds=10, poll_seconds=0.1)
    assert [f.id for f in findings] == ["CVE-2024-4444"]
    image = ecr.describe_images(repositoryName=repository, imageIds=[{"imageDigest": digest}])
    assert image["imageDetails"][0]["imageDigest"] == digest


def test_an_image_unknown_to_ecr_is_a_clear_error(ecr: Any, repository: str) -> None:
    ensure_repository(ecr, repository)
    digest = f"sha256:{'0' * 64}"
    with pytest.raises(TerminalError, match="must be pushed to \\(or copied into\\) that ECR"):
        scan_findings(ecr, repository, digest, wait_seconds=1)
    with pytest.raises(TerminalError, match=f"is not in the ECR repository '{repository}-x'"):
        scan_findings(ecr, f"{repository}-x", digest, wait_seconds=1)


# --- the verdict --------------------------------------------------------------------------

TODAY = date(2026, 6, 1)
CRIT = Finding("CVE-1", "CRITICAL", "a 1")
HIGH = Finding("CVE-2", "HIGH", "b 1")
MEDIUM = Finding("CVE-3", "MEDIUM", "c 1")
LOW = Finding("CVE-4", "LOW", "d 1")
INFO = Finding("CVE-5", "INFORMATIONAL", "e 1")
UNRATED = Finding("CVE-6", "UNTRIAGED", "f 1")


@pytest.mark.parametrize(
    ("findings", "fail_on", "blocking"),
    [
        ([], "high", []),
        ([LOW, MEDIUM], "high", []),
        ([LOW, HIGH], "high", ["CVE-2"]),
        ([CRIT, HIGH, MEDIUM], "critical", ["CVE-1"]),
        ([CRIT, HIGH, MEDIUM, LOW], "medium", ["CVE-1", "CVE-2", "CVE-3"]),
        ([INFO, UNRATED], "low", []),
        ([INFO, UNRATED], "informational", ["CVE-5"]),
        ([CRIT, HIGH], "never", []),
    ],
)
def test_judge_findings_threshold(
    findings: list[Finding], fail_on: Any, blocking: list[str]
) -> None:
    verdict = judge_findings(findings, fail_on, [], TODAY)
    assert [row.finding.id for row in verdict.blocking] == blocking
    assert verdict.passed is (blocking == [])


def test_judge_findings_rows_are_most_severe_first() -> None:
    verdict = judge_findings([UNRATED, LOW, CRIT, HIGH], "high", [], TODAY)
    assert [row.finding.id for row in verdict.rows] == ["CVE-1", "CVE-2", "CVE-4", "CVE-6"]
    assert severity_counts(verdict) == {"CRITICAL": 1, "HIGH": 1, "LOW": 1, "UNTRIAGED": 1}


def test_an_allow_entry_lets_a_finding_through_until_its_date() -> None:
    allow = [AllowedFinding(id="cve-2", reason="not reachable", until=TODAY)]
    verdict = judge_findings([HIGH, LOW], "high", allow, TODAY)
    assert verdict.passed
    assert verdict.rows[0].allowed
    assert verdict.rows[0].note == "allowed until 2026-06-01: not reachable"


def test_an_expired_allow_entry_no_longer_counts() -> None:
    allow = [AllowedFinding(id="CVE-2", reason="not reachable", until=date(2026, 5, 31))]
    verdict = judge_findings([HIGH], "high", allow, TODAY)
    assert not verdict.passed
    assert verdict.blocking[0].note == "allow entry CVE-2 expired on 2026-05-31"
