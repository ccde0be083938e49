"""The image scan gate on the real stack: images pushed to the local registry, findings from
ECR (the stack's moto server over HTTP) for the same digests.

"Where images are pushed" and "where scan results come from" are separate settings, which is
what makes this test possible: moto has no registry v2 API and cannot receive a docker push,
so after the shop's first dev release the test copies each pushed manifest into moto's ECR
with `put_image` (same bytes, so the same digest), as a push to ECR would have stored it.

The order of events, and why:

1. v1 (no `image_scan`) is released to dev: images built and pushed to the local registry.
2. Its images are copied into ECR, each with only a LOW finding configured.
3. v2 turns the gate on (`source: ecr, fail_on: high`) and is released to dev: same content,
   so the same digests are reused and gated by the service pipeline; LOW passes.
4. New findings arrive for the same digests (a rescan, as ECR does when new CVEs are
   published): one HIGH with an expired allow entry, one HIGH with none. Promotion to staging
   is refused as a whole, naming both, and staging is untouched.
5. The findings change again to a HIGH with a current allow entry and only LOWs: promotion
   passes.

Moto answers the first scan result an image was asked for ever after, so "new findings" means
a fresh copy of the image in ECR (delete, `put_image` again): its first gate starts a scan and
waits for it, which is also the path for an image copied in without scan on push.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import closing
from datetime import date, timedelta
from typing import Any

import boto3
import docker
import httpx
import pytest

from flows.promote import promote
from flows.release import release
from relay.aws.ecr import ensure_repository
from relay.errors import StageFailed
from relay.ledger import Ledger, Outcome
from relay.registry import MANIFEST_TYPES
from relay.settings import relay_database
from tests.flows.shop import Shop, shop_repository

pytestmark = pytest.mark.stack

OFFSETS = {"dev": 19500, "staging": 20500, "prod": 21500}
REGION = "us-east-1"
FUTURE = date.today() + timedelta(days=365)
EXPIRED = date(2020, 1, 31)


@pytest.fixture(scope="module")
def ecr() -> Any:
    return boto3.client("ecr", region_name=REGION)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, ecr: Any) -> Iterator[Shop]:
    with shop_repository(tmp_path_factory, "scan", OFFSETS) as shop:
        yield shop
        for service in ("gateway", "orders", "inventory", "payments"):
            ecr.delete_repository(repositoryName=f"{shop.app}/{service}", force=True)


def finding(ident: str, severity: str) -> dict[str, Any]:
    return {
        "name": ident,
        "severity": severity,
        "attributes": [{"key": "package_name", "value": "openssl"}],
    }


def copy_to_ecr(ecr: Any, repository: str, digest: str, tag: str) -> None:
    """Store the local registry's manifest of `digest` in ECR, byte for byte."""
    registry = os.environ.get("RELAY_REGISTRY", "127.0.0.1:5000")
    got = httpx.get(
        f"http://{registry}/v2/{repository}/manifests/{digest}",
        headers={"Accept": MANIFEST_TYPES},
    )
    got.raise_for_status()
    ecr.put_image(
        repositoryName=repository,
        imageManifest=got.text,
        imageManifestMediaType=got.headers["Content-Type"],
        imageTag=tag,
        imageDigest=digest,
    )


def set_findings(repository: str, digest: str, findings: list[dict[str, Any]]) -> None:
    """What ECR's scan of this image will report (moto's API for it)."""
    result = {
        "repositoryName": repository,
        "imageId": {"imageDigest": digest},
        "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed."},
        "imageScanFindings": {"findings": findings},
    }
    response = httpx.post(
        f"{os.environ['AWS_ENDPOINT_URL']}/moto-api/static/ecr/scan-finding-results",
        json={"results": [result], "region": REGION},
    )
    response.raise_for_status()


def rescan(ecr: Any, repository: str, digest: str, findings: list[dict[str, Any]]) -> None:
    """New findings for the same digest: a fresh copy of the image, its scan not yet done."""
    ecr.batch_delete_image(repositoryName=repository, imageIds=[{"imageDigest": digest}])
    copy_to_ecr(ecr, repository, digest, "rescanned")
    set_findings(repository, digest, findings)


@pytest.fixture(scope="module")
def images(shop: Shop, ecr: Any) -> dict[str, str]:
    """Steps 1-3: {service: image} released to dev by v2, with the gate on."""
    v1 = shop.commit("Initial shop")
    dev = {r.service: r.image for r in asyncio.run(release(str(shop.repo), v1))}
    for service, image in dev.items():
        repository, digest = f"{shop.app}/{service}", image.split("@")[1]
        ensure_repository(ecr, repository)
        copy_to_ecr(ecr, repository, digest, v1)
        set_findings(repository, digest, [finding("CVE-2099-0100", "LOW")])

    def gate(manifest: dict[str, Any]) -> None:
        manifest["image_scan"] = {
            "source": "ecr",
            "fail_on": "high",
            "allow": [
                {"id": "CVE-2099-0002", "reason": "not reachable from our code", "until": FUTURE},
                {"id": "CVE-2020-0001", "reason": "fixed upstream soon", "until": EXPIRED},
            ],
        }

    shop.edit_manifest(gate)
    v2 = shop.commit("Gate on ECR's image scan")
    gated = {r.service: r for r in asyncio.run(release(str(shop.repo), v2))}
    assert {s: r.image for s, r in gated.items()} == dev
    assert not any(r.built for r in gated.values())
    return dev


def staging_containers(app: str) -> list[Any]:
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
        filters = {"label": [f"relay.app={app}", "relay.env=staging"]}
        return list(client.containers.list(all=True, filters=filters))


def test_the_same_digests_are_in_ecr(shop: Shop, ecr: Any, images: dict[str, str]) -> None:
    for service, image in images.items():
        digest = image.split("@")[1]
        found = ecr.describe_images(
            repositoryName=f"{shop.app}/{service}", imageIds=[{"imageDigest": digest}]
        )
        assert found["imageDetails"][0]["imageDigest"] == digest


def test_a_high_finding_stops_promotion_with_nothing_deployed(
    shop: Shop, ecr: Any, images: dict[str, str]
) -> None:
    orders, inventory = (f"{shop.app}/{s}" for s in ("orders", "inventory"))
    rescan(ecr, orders, images["orders"].split("@")[1], [finding("CVE-2020-0001", "HIGH")])
    rescan(
        ecr,
        inventory,
        images["inventory"].split("@")[1],
        [finding("CVE-2099-0003", "CRITICAL"), finding("CVE-2099-0004", "LOW")],
    )
    with pytest.raises(StageFailed) as refused:
        asyncio.run(promote(str(shop.repo), "HEAD", "staging"))
    message = str(refused.value)
    assert "nothing was deployed" in message
    assert f"orders: image {images['orders'].split('@')[1]}" in message
    assert "CVE-2020-0001 HIGH openssl (allow entry CVE-2020-0001 expired on 2020-01-31)" in message
    assert "inventory: image" in message and "CVE-2099-0003 CRITICAL" in message
    assert "CVE-2099-0004" not in message  # LOW is under the threshold
    assert "image_scan.allow" in message and "until: YYYY-MM-DD" in message
    assert "gateway" not in message and "payments" not in message

    assert staging_containers(shop.app) == []
    records = Ledger(relay_database()).history(shop.app, environment="staging")
    assert not [r for r in records if r.outcome == Outcome.SUCCEEDED]


def test_allowed_or_low_findings_let_the_promotion_through(
    shop: Shop, ecr: Any, images: dict[str, str]
) -> None:
    orders, inventory = (f"{shop.app}/{s}" for s in ("orders", "inventory"))
    rescan(ecr, orders, images["orders"].split("@")[1], [finding("CVE-2099-0002", "HIGH")])
    rescan(ecr, inventory, images["inventory"].split("@")[1], [finding("CVE-2099-0004", "LOW")])
    staged = {r.service: r.image for r in asyncio.run(promote(str(shop.repo), "HEAD", "staging"))}
    assert staged == images
    ledger = Ledger(relay_database())
    for service, image in images.items():
        record = ledger.current(shop.app, "staging", service)
        assert record is not None and record.image == image
        assert record.outcome == Outcome.SUCCEEDED
