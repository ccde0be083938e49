"""A release whose first environment is kubernetes, end to end: `release` builds and pushes the
images (stack's engine and registry), deploys them to a kubernetes dev on the real control
plane (kwok nodes) with their configuration from Secrets Manager (moto) as a Secret mounted with
envFrom, runs each service's integration tests as a Job in the namespace, records the ledger,
and `relay status` agrees with the cluster. Tests that fail (kwok ends the Job's pod with exit
code 1 when its image says `fails-tests`) roll the service back and record why."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from kubernetes import client

from deployments.status import status_report
from devstack.controlplane import FAILS_TESTS
from flows.release import release
from relay.errors import RelayError
from relay.ledger import Ledger, Outcome
from relay.manifest import load_manifest
from relay.settings import relay_database

pytestmark = pytest.mark.stack

SERVER = """\
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"version": os.environ.get("GIT_SHA", "?")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

HTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Handler).serve_forever()
"""
DOCKERFILE = """\
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG GIT_SHA=unknown
ENV GIT_SHA=${GIT_SHA}
COPY server.py /srv/server.py
USER 10001
CMD ["python3", "/srv/server.py"]
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@x", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def namespace(control_plane: Any) -> Iterator[str]:
    api = control_plane.api_client()
    name = f"relay-kdev-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
    api.close()


@pytest.fixture
def app_repo(tmp_path: Path, namespace: str, control_plane: Any) -> Iterator[Path]:
    """Two services under `svc/`, a kubernetes dev only, configuration in Secrets Manager."""
    app = f"kdev-{uuid.uuid4().hex[:6]}"
    repo = tmp_path / "app"
    for name in ("api", "store"):
        (repo / "svc" / name).mkdir(parents=True)
        (repo / "svc" / name / "server.py").write_text(SERVER)
        (repo / "svc" / name / "Dockerfile").write_text(DOCKERFILE)
    secret = f"{app}-dev-config"
    manifest = {
        "app": app,
        "services": {
            "store": {"path": "svc/store", "port": 8100, "integration_tests": ["pytest", "-q"]},
            "api": {
                "path": "svc/api",
                "port": 8101,
                "depends_on": ["store"],
                "public": True,
                "integration_tests": ["pytest", "-q", "tests/integration"],
            },
        },
        "environments": {
            "dev": {
                "platform": "kubernetes",
                "namespace": namespace,
                "secrets": secret,
                "kubernetes": {
                    "kubeconfig": str(control_plane.kubeconfig),
                    "replicas": 1,
                    "progress_deadline_seconds": 20,
                },
            }
        },
    }
    (repo / "relay.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    secrets = boto3.client("secretsmanager")
    secrets.create_secret(Name=secret, SecretString=json.dumps({"GREETING": "hello"}))
    _git(repo.parent, "init", "-q", "--initial-branch=main", str(repo))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "two services on kubernetes")
    try:
        yield repo
    finally:
        secrets.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)


def test_a_release_to_a_kubernetes_dev_runs_its_tests_as_jobs_in_the_namespace(
    app_repo: Path, namespace: str, control_plane: Any
) -> None:
    sha = _git(app_repo, "rev-parse", "HEAD")
    manifest = load_manifest(app_repo / "relay.yaml")

    shipped = asyncio.run(release(str(app_repo), sha))

    assert {s.service for s in shipped} == {"api", "store"}
    api = control_plane.api_client()
    try:
        apps = client.AppsV1Api(api)
        for result in shipped:
            deployment = apps.read_namespaced_deployment(result.service, namespace)
            container = deployment.spec.template.spec.containers[0]
            assert container.image == result.image and "@sha256:" in result.image
            assert [e.secret_ref.name for e in container.env_from or []], "envFrom its Secret"
        jobs = client.BatchV1Api(api).list_namespaced_job(namespace).items
        assert all(j.metadata.deletion_timestamp is not None for j in jobs), "Jobs are removed"
        policy = client.NetworkingV1Api(api).read_namespaced_network_policy("store", namespace)
        admitted = [f.pod_selector.match_labels for f in policy.spec.ingress[0]._from]
        assert {"relay.dev/app": manifest.app, "relay.dev/role": "tests"} in admitted
    finally:
        api.close()
    records = Ledger(relay_database()).history(manifest.app, limit=10)
    assert sorted((r.service, r.outcome) for r in records) == [
        ("api", Outcome.SUCCEEDED),
        ("store", Outcome.SUCCEEDED),
    ]
    assert status_report(manifest.app, manifest)[1] == [], "relay status agrees with the cluster"

    # Integration tests that fail in the cluster: the new version of api is rolled back.
    text = (app_repo / "relay.yaml").read_text()
    document = yaml.safe_load(text)
    document["services"]["api"]["test_image"] = f"127.0.0.1:5000/tests/{FAILS_TESTS}:1"
    (app_repo / "relay.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    (app_repo / "svc" / "api" / "server.py").write_text(SERVER + "# v2\n")
    _git(app_repo, "commit", "-qam", "api v2, whose tests fail")
    failing = _git(app_repo, "rev-parse", "HEAD")

    with pytest.raises(RelayError, match=r"api: integration tests failed .* a Job in"):
        asyncio.run(release(str(app_repo), failing))

    api_records = Ledger(relay_database()).history(manifest.app, "api", "dev", limit=5)
    assert api_records[0].commit == failing and api_records[0].outcome is not Outcome.SUCCEEDED
    first_api = next(s for s in shipped if s.service == "api")
    api = control_plane.api_client()
    try:
        deployment = client.AppsV1Api(api).read_namespaced_deployment("api", namespace)
        assert deployment.spec.template.spec.containers[0].image == first_api.image
    finally:
        api.close()


def test_smoke_tests_run_as_a_job_against_the_new_version_before_it_gets_traffic(
    app_repo: Path, namespace: str, control_plane: Any
) -> None:
    """dev's smoke tests, in store's test image whose tests fail: the Job fails before store's
    first version takes traffic, and the release stops there, saying so."""
    document = yaml.safe_load((app_repo / "relay.yaml").read_text())
    document["environments"]["dev"]["smoke_tests"] = ["pytest", "-q", "smoke"]
    document["services"]["store"]["test_image"] = f"127.0.0.1:5000/tests/{FAILS_TESTS}:smoke"
    (app_repo / "relay.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    _git(app_repo, "commit", "-qam", "smoke tests in dev")
    sha = _git(app_repo, "rev-parse", "HEAD")

    with pytest.raises(RelayError, match=r"store: smoke tests failed .* a Job in " + namespace):
        asyncio.run(release(str(app_repo), sha))

    records = Ledger(relay_database()).history(document["app"], "store", "dev", limit=5)
    assert [(r.commit, r.outcome) for r in records] == [(sha, Outcome.ROLLED_BACK)]
    api = control_plane.api_client()
    try:
        store = client.AppsV1Api(api).read_namespaced_deployment("store", namespace)
        assert store.spec.replicas == 0, "a first version that failed its smoke tests serves not"
    finally:
        api.close()


def test_a_namespace_that_does_not_exist_stops_the_release_before_any_build(
    app_repo: Path, namespace: str
) -> None:
    document = yaml.safe_load((app_repo / "relay.yaml").read_text())
    document["environments"]["dev"]["namespace"] = "no-such-namespace"
    (app_repo / "relay.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    _git(app_repo, "commit", "-qam", "a namespace nobody made")
    sha = _git(app_repo, "rev-parse", "HEAD")

    with pytest.raises(RelayError) as stopped:
        asyncio.run(release(str(app_repo), sha))

    assert str(stopped.value).endswith(
        "relay.yaml: environments.dev.namespace: namespace 'no-such-namespace' does not exist "
        "in the cluster; create it (kubectl create namespace no-such-namespace), or name an "
        "existing one: Relay does not create namespaces"
    )
    assert Ledger(relay_database()).releases(document["app"]) == [], "stopped before a release"
