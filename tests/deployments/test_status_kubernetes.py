"""`relay status` on a kubernetes environment: the ledger beside the cluster's Deployments (the
real control plane, kwok nodes), not beside Docker containers. No false drift when they agree;
a Deployment edited by hand (`kubectl set image`) or deleted is reported."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from prefect_docker import DockerHost

from deployments.status import status_report
from flows.strategies import rolling
from relay.ledger import Ledger
from relay.manifest import parse_manifest
from relay.registry import ImageRef
from relay.settings import relay_database
from relay.specs import deploy_spec
from tests.flows.test_kubernetes import image
from tests.relay.records import record

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"orders": 8002, "catalog": 8005}


@pytest.fixture
def namespace(control_plane: Any) -> Iterator[str]:
    api = control_plane.api_client()
    name = f"relay-status-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
    api.close()


def _document(app: str, namespace: str, kubeconfig: Path) -> dict[str, Any]:
    return {
        "app": app,
        "services": {name: {"path": f"apps/{name}", "port": p} for name, p in SERVICES.items()},
        "environments": {
            "prod": {
                "platform": "kubernetes",
                "namespace": namespace,
                "secrets": None,
                "kubernetes": {"kubeconfig": str(kubeconfig), "progress_deadline_seconds": 5},
            }
        },
    }


def test_status_compares_the_ledger_with_the_clusters_deployments(
    control_plane: Any, namespace: str, tmp_path: Path
) -> None:
    app = f"kstatus-{uuid.uuid4().hex[:6]}"
    document = _document(app, namespace, control_plane.kubeconfig)
    manifest = parse_manifest(document, tmp_path / "relay.yaml")
    ledger = Ledger(relay_database())
    for service in SERVICES:
        ref = image(f"{app}-v1", service)
        spec = deploy_spec(manifest, "prod", service, ImageRef.parse(ref), "c" * 40, "t1")
        asyncio.run(rolling(DockerHost(), spec, manifest.environments["prod"], False))
        ledger.append(record(app=app, service=service, environment="prod", image=ref))

    table, drift = status_report(app, manifest)
    assert drift == [], "the ledger and the cluster agree: no drift"
    assert all(service in table for service in SERVICES)
    # Without the manifest, the environment would be read from Docker, where nothing runs.
    assert len(status_report(app)[1]) == len(SERVICES)

    api = control_plane.api_client()
    try:
        apps = client.AppsV1Api(api)
        hand = image("hotfix-by-hand", "orders")
        apps.patch_namespaced_deployment(
            "orders",
            namespace,
            {"spec": {"template": {"spec": {"containers": [{"name": "orders", "image": hand}]}}}},
        )
        apps.delete_namespaced_deployment("catalog", namespace)
    finally:
        api.close()

    _, drift = status_report(app, manifest)
    assert any(
        line.startswith("prod/orders: the ledger says") and "the platform runs" in line
        for line in drift
    ), drift
    assert any(
        line.startswith(f"prod/orders: Deployment {namespace}/orders was edited by hand")
        and hand in line
        for line in drift
    ), drift
    assert any(line.startswith("prod/catalog:") and "runs nothing" in line for line in drift)

    # The same through the command, from the application's directory.
    (tmp_path / "relay.yaml").write_text(yaml.safe_dump(document))
    shown = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "status"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "drift: prod/orders: Deployment" in shown.stdout
    assert "drift: prod/catalog:" in shown.stdout
