"""Deployment events on the real stack: a deployment and a rollback each put one event on
EventBridge (moto), delivered through a rule and an SQS target that the test sets up as a user
would, and one Prefect event on the server."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from flows.release import release
from flows.rollback import rollback
from tests.flows.test_kubernetes_release import _git

pytestmark = pytest.mark.stack

SERVER = """\
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"version": os.environ.get("VERSION", "1")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""
DOCKERFILE = """\
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
COPY main.py /srv/main.py
USER 65534
CMD ["python3", "/srv/main.py"]
"""


@pytest.fixture
def queue(app_repo: Path) -> Iterator[str]:
    """An SQS queue that an EventBridge rule fills with the events of this test's app (other
    tests of the session deploy other apps at the same time, on the same bus)."""
    sqs, events = boto3.client("sqs"), boto3.client("events")
    name = f"relay-events-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    pattern = {"source": ["relay"], "detail": {"app": [app_repo.name]}}
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": arn}])
    yield url
    events.remove_targets(Rule=name, Ids=["queue"])
    events.delete_rule(Name=name)
    sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def app_repo(tmp_path: Path) -> Path:
    app = f"events-{uuid.uuid4().hex[:6]}"
    repo = tmp_path / app
    (repo / "clock").mkdir(parents=True)
    (repo / "clock" / "main.py").write_text(SERVER)
    (repo / "clock" / "Dockerfile").write_text(DOCKERFILE)
    manifest = {
        "app": app,
        "services": {"clock": {"path": "clock", "port": 8400}},
        "environments": {"dev": {"port_offset": 9250, "secrets": None}},  # 17650-17850
    }
    (repo / "relay.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    _git(repo.parent, "init", "-q", "--initial-branch=main", str(repo))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "clock v1")
    return repo


def _received(queue: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        answer = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in answer.get("Messages", []):
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return found


def test_a_deployment_and_a_rollback_are_one_event_each(app_repo: Path, queue: str) -> None:
    app = app_repo.name
    v1 = _git(app_repo, "rev-parse", "HEAD")
    asyncio.run(release(str(app_repo), v1))
    (app_repo / "clock" / "main.py").write_text(SERVER.replace('"1"', '"2"'))
    _git(app_repo, "commit", "-qam", "clock v2")
    v2 = _git(app_repo, "rev-parse", "HEAD")
    asyncio.run(release(str(app_repo), v2))
    asyncio.run(rollback(str(app_repo), "clock", "dev"))

    events = sorted(_received(queue, 3), key=lambda e: str(e["detail"]["at"]))
    seen = [(e["detail-type"], e["detail"]["commit"], e["detail"]["outcome"]) for e in events]
    assert seen == [
        ("Relay Deployment", v1, "succeeded"),
        ("Relay Deployment", v2, "succeeded"),
        ("Relay Rollback", v1, "succeeded"),
    ], seen
    last = events[-1]
    assert last["source"] == "relay"
    assert {k: last["detail"][k] for k in ("app", "service", "environment")} == {
        "app": app,
        "service": "clock",
        "environment": "dev",
    }
    assert last["detail"]["digest"].startswith("sha256:")

    wanted = EventFilter(
        event=EventNameFilter(prefix=["relay.deployment."]),
        resource=EventResourceFilter(id=[f"relay.service.{app}.dev.clock"]),
    )
    deadline = time.monotonic() + 30  # the server stores events a moment after they arrive
    with get_client(sync_client=True) as client:
        while True:
            names = sorted(e.event for e in client.read_events(wanted, limit=50).events)
            if len(names) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(1)
    assert names == ["relay.deployment.succeeded"] * 3
