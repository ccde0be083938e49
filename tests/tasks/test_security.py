"""The compliance task on a kubernetes environment: the objects the platform would apply are
rendered and checked (checkov and Relay's policies), or the ones given are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from relay.errors import StageFailed
from relay.manifest import Manifest, parse_manifest
from tasks.security import check_compliance

pytestmark = [
    pytest.mark.stack,  # artifacts go to the stack's Prefect server
    # the task is called through .fn(), outside a run: Prefect warns that such artifacts
    # will not be allowed some day; the flow tests create them inside runs
    pytest.mark.filterwarnings("ignore:Artifact creation outside:FutureWarning"),
]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop" / "relay.yaml"
IMAGE = "127.0.0.1:5000/shop/orders@sha256:" + "a" * 64


def shop_on_kubernetes() -> Manifest:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["environments"]["prod"] = {
        "platform": "kubernetes",
        "namespace": "shop-prod",
        "strategy": "canary",
        "secrets": None,
    }
    return parse_manifest(data, EXAMPLE)


def test_the_rendered_objects_of_a_kubernetes_environment_pass() -> None:
    verdict = check_compliance.fn(shop_on_kubernetes(), "orders", "prod", IMAGE)

    assert verdict.passed
    assert {row.violation.rule_id for row in verdict.rows} == {"CKV_DOCKER_2", "CKV_DOCKER_7"}
    assert all(row.covered and not row.skipped for row in verdict.rows)


def test_a_deployment_without_limits_fails_naming_the_rule_and_fix() -> None:
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "orders", "namespace": "shop-prod"},
        "spec": {
            "selector": {"matchLabels": {"app": "orders"}},
            "template": {
                "metadata": {"labels": {"app": "orders"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                    "containers": [{"name": "orders", "image": IMAGE}],
                },
            },
        },
    }

    with pytest.raises(StageFailed) as refused:
        check_compliance.fn(shop_on_kubernetes(), "orders", "prod", IMAGE, [deployment])

    message = str(refused.value)
    assert "orders: " in message and "compliance violation(s) for prod:" in message
    assert (
        "Deployment/shop-prod/orders container orders: RELAY_LIMITS every container has CPU and "
        "memory limits: set environments.<env>.kubernetes.resources.limits: "
        "{cpu: 500m, memory: 256Mi}; missing: cpu, memory"
    ) in message
    assert (
        "rendered orders Deployment.shop-prod.orders: CKV_K8S_11 CPU limits should be set: "
        "set resources.limits.cpu on the container"
    ) in message
