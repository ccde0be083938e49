"""A whole application on Kubernetes environments only, end to end on the real control plane
(kwok nodes) and the real stack (engine, registry, moto, Prefect): released to a kubernetes dev,
promoted to staging with its integration and end-to-end tests as Jobs in the namespace,
promoted to prod with an approval and a canary (ALB weighted target groups) judged by request
metrics from CloudWatch; a bad version's canary is rolled back; at the end the ledger and
`relay status` agree with the cluster.

What stands in: kwok runs no container, so the Jobs' pods end as its stages say (exit 0 here)
and the canary's request metrics are put into CloudWatch (moto) by the test, as the ALB would.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from kubernetes import client

from deployments.approvals import decide, waiting_runs
from deployments.status import status_report
from flows.promote import promote
from flows.release import release
from relay.errors import RelayError
from relay.ledger import Ledger, Outcome
from relay.manifest import load_manifest
from relay.settings import relay_database
from tests.flows.test_kubernetes_release import DOCKERFILE, SERVER, _git
from tests.flows.test_promote import in_background, wait_for_approval_form

pytestmark = pytest.mark.stack

ENVIRONMENTS = ("dev", "staging", "prod")
METRICS = "Relay/Test/kubernetes-application"


class Feeder:
    """Puts the canary's and the stable version's request counts into CloudWatch every half
    second, as the ALB does per target group: {version: (requests, 5xx)}."""

    def __init__(self, app: str, per_put: dict[str, tuple[int, int]]) -> None:
        self.app = app
        self.per_put = per_put
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        cloudwatch = boto3.client("cloudwatch")
        while not self.stop.wait(0.5):
            data = [
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": "TargetGroup", "Value": f"{self.app}-{version}"}],
                    "Timestamp": datetime.now(UTC),
                    "Value": float(value),
                }
                for version, (requests, errors) in self.per_put.items()
                for name, value in (("RequestCount", requests), ("HTTPCode_5XX", errors))
            ]
            cloudwatch.put_metric_data(Namespace=METRICS, MetricData=data)


@pytest.fixture
def namespaces(control_plane: Any) -> Iterator[dict[str, str]]:
    api = control_plane.api_client()
    core = client.CoreV1Api(api)
    made = {env: f"relay-kapp-{env}-{uuid.uuid4().hex[:6]}" for env in ENVIRONMENTS}
    for name in made.values():
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield made
    for name in made.values():
        core.delete_namespace(name)
    api.close()


def _environment(namespace: str, kubeconfig: Path, secret: str) -> dict[str, Any]:
    return {
        "platform": "kubernetes",
        "namespace": namespace,
        "secrets": secret,
        "kubernetes": {
            "kubeconfig": str(kubeconfig),
            "replicas": 2,
            "progress_deadline_seconds": 20,
        },
    }


@pytest.fixture
def application(tmp_path: Path, namespaces: dict[str, str], control_plane: Any) -> Iterator[Path]:
    """`web` (public) calls `catalog`; every environment is kubernetes."""
    app = f"kapp-{uuid.uuid4().hex[:6]}"
    repo = tmp_path / app
    for name in ("web", "catalog"):
        (repo / "components" / name).mkdir(parents=True)
        (repo / "components" / name / "server.py").write_text(SERVER)
        (repo / "components" / name / "Dockerfile").write_text(DOCKERFILE)
    secrets = boto3.client("secretsmanager")
    environments = {}
    for env in ENVIRONMENTS:
        secret = f"{app}-{env}-config"
        secrets.create_secret(Name=secret, SecretString=json.dumps({"MODE": env}))
        environments[env] = _environment(namespaces[env], control_plane.kubeconfig, secret)
    environments["prod"] |= {
        "strategy": "canary",
        "canary_steps": [50, 100],
        "approval": {"required": True, "approvers": ["carol"], "timeout_seconds": 120},
        "analysis": {
            "interval_seconds": 2,
            "min_requests": 5,
            "max_error_rate": 0.05,
            "metrics": "cloudwatch",
            "cloudwatch_metrics": {
                "namespace": METRICS,
                "dimensions": {"TargetGroup": f"{app}-{{{{version}}}}"},
                "requests": "RequestCount",
                "errors": "HTTPCode_5XX",
            },
        },
    }
    environments["prod"]["kubernetes"] |= {"traffic": "alb"}
    manifest = {
        "app": app,
        "services": {
            "catalog": {
                "path": "components/catalog",
                "port": 8200,
                "integration_tests": ["pytest"],
            },
            "web": {
                "path": "components/web",
                "port": 8201,
                "depends_on": ["catalog"],
                "public": True,
                "integration_tests": ["pytest", "-q"],
            },
        },
        "e2e_tests": ["pytest", "-q", "e2e"],
        "e2e_image": f"127.0.0.1:5000/{app}/e2e:1",
        "environments": environments,
    }
    (repo / "relay.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    _git(repo.parent, "init", "-q", "--initial-branch=main", str(repo))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "an application on kubernetes only")
    try:
        yield repo
    finally:
        for env in ENVIRONMENTS:
            secrets.delete_secret(SecretId=f"{app}-{env}-config", ForceDeleteWithoutRecovery=True)


def _to_prod(repo: Path, sha: str, app: str) -> dict[str, Any]:
    """Promote `sha` to prod in the background and approve it as carol."""
    known = {r.id for r in waiting_runs()}
    thread, outcome = in_background(lambda: asyncio.run(promote(str(repo), sha, "prod")))
    form = wait_for_approval_form(known, app)
    decide(str(form.id), True, "carol", "ship it")
    thread.join(timeout=300)
    assert not thread.is_alive(), "the promotion did not end"
    return outcome


def _serving(control_plane: Any, namespace: str) -> dict[str, str]:
    api = control_plane.api_client()
    try:
        apps = client.AppsV1Api(api)
        return {
            name: apps.read_namespaced_deployment(name, namespace)
            .spec.template.spec.containers[0]
            .image
            for name in ("web", "catalog")
        }
    finally:
        api.close()


def test_an_application_goes_from_commit_to_an_approved_canary_on_kubernetes_only(
    application: Path, namespaces: dict[str, str], control_plane: Any
) -> None:
    manifest = load_manifest(application / "relay.yaml")
    app = manifest.app
    v1 = _git(application, "rev-parse", "HEAD")

    shipped = {r.service: r.image for r in asyncio.run(release(str(application), v1))}
    staged = {r.service: r.image for r in asyncio.run(promote(str(application), v1, "staging"))}
    assert staged == shipped, "staging gets the digests that passed dev"
    with Feeder(app, {"canary": (20, 0), "stable": (20, 0)}):
        outcome = _to_prod(application, v1, app)
    assert "error" not in outcome, outcome.get("error")
    assert _serving(control_plane, namespaces["prod"]) == shipped

    # A bad web: its canary's 5xx fail the analysis, and prod keeps v1.
    (application / "components" / "web" / "server.py").write_text(SERVER + "# v2\n")
    _git(application, "commit", "-qam", "web v2")
    v2 = _git(application, "rev-parse", "HEAD")
    asyncio.run(release(str(application), v2))
    asyncio.run(promote(str(application), v2, "staging"))
    with Feeder(app, {"canary": (20, 10), "stable": (20, 0)}):
        outcome = _to_prod(application, v2, app)
    assert isinstance(outcome.get("error"), RelayError), outcome
    assert "canary analysis failed" in str(outcome["error"])
    assert _serving(control_plane, namespaces["prod"]) == shipped

    ledger = Ledger(relay_database())
    web = ledger.history(app, "web", "prod", limit=5)
    assert [(r.commit, r.outcome) for r in web][:2] == [
        (v2, Outcome.ROLLED_BACK),
        (v1, Outcome.SUCCEEDED),
    ]
    assert web[1].approver == "carol"
    catalog = [r for r in ledger.history(app, "catalog", limit=20) if r.commit == v2]
    assert {r.outcome for r in catalog} == {Outcome.UNCHANGED}, (
        "v2 changed web only: catalog was left as it ran, in every environment, no canary"
    )
    for env in ENVIRONMENTS:
        for service in ("web", "catalog"):
            current = ledger.current(app, env, service)
            assert current is not None and current.outcome is Outcome.SUCCEEDED
    assert status_report(app, manifest)[1] == [], "relay status agrees with every cluster"
