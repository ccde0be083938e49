"""The services' own output in CloudWatch Logs (`cloudwatch.service_logs`), on the real stack:
the containers log through the stack's dockerd's awslogs driver into moto, under
`/<app>/<environment>/<service>`, one stream per container named for its slot and digest, and
`relay logs` shows each line with the version that wrote it. The service prints, then crashes:
its last words are what a person needs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml

from flows.release import release
from relay.errors import RelayError
from relay.ledger import Ledger
from relay.settings import relay_database
from tests.flows.test_kubernetes_release import _git

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
CRASHES = """\
import sys, time
print("loading the price list", flush=True)
print("price list has 3 rows", flush=True)
time.sleep(0.5)
print("Traceback (most recent call last):\\nValueError: no currency for row 2", flush=True)
sys.exit(3)
"""
DOCKERFILE = """\
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
COPY main.py /srv/main.py
USER 65534
CMD ["python3", "/srv/main.py"]
"""


@pytest.fixture
def app_repo(tmp_path: Path) -> Iterator[Path]:
    app = f"logs-{uuid.uuid4().hex[:6]}"
    repo = tmp_path / app
    (repo / "pricing").mkdir(parents=True)
    (repo / "pricing" / "main.py").write_text(CRASHES)
    (repo / "pricing" / "Dockerfile").write_text(DOCKERFILE)
    manifest = {
        "app": app,
        "services": {"pricing": {"path": "pricing", "port": 8300}},
        "environments": {"dev": {"port_offset": 9000, "secrets": None}},  # 17300-17500
        "cloudwatch": {"service_logs": True, "service_log_retention_days": 7},
    }
    (repo / "relay.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    _git(repo.parent, "init", "-q", "--initial-branch=main", str(repo))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "a service that crashes")
    yield repo
    logs = boto3.client("logs")
    for group in logs.describe_log_groups(logGroupNamePrefix=f"/{app}/")["logGroups"]:
        logs.delete_log_group(logGroupName=group["logGroupName"])


def _lines(group: str, want: str, timeout: float = 30) -> list[dict[str, str]]:
    """The group's events once one contains `want` (the driver sends in batches)."""
    logs = boto3.client("logs")
    deadline = time.monotonic() + timeout
    while True:
        events = logs.filter_log_events(logGroupName=group)["events"]
        if any(want in e["message"] for e in events) or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def test_a_crashing_services_output_is_in_cloudwatch_logs_and_relay_logs_shows_its_version(
    app_repo: Path,
) -> None:
    sha = _git(app_repo, "rev-parse", "HEAD")
    app = app_repo.name

    with pytest.raises(RelayError, match="pricing"):
        asyncio.run(release(str(app_repo), sha))

    group = f"/{app}/dev/pricing"
    logs = boto3.client("logs")
    (found,) = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert found["retentionInDays"] == 7
    events = _lines(group, "no currency for row 2")
    messages = "\n".join(e["message"] for e in events)
    assert "loading the price list" in messages and "no currency for row 2" in messages
    (record,) = Ledger(relay_database()).history(app, "pricing", "dev", limit=5)
    short = record.digest.removeprefix("sha256:")[:12]
    streams = {e["logStreamName"] for e in events}
    assert streams and all(s.endswith(f"-{short}") for s in streams), streams
    assert all(s.startswith(f"relay-{app}-dev-pricing-") for s in streams), streams

    shown = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "logs", "pricing", "--env", "dev",
         "--app", app, "--since", "10m"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    crash = [line for line in shown.stdout.splitlines() if "no currency for row 2" in line]
    assert crash and f"{short} (commit {sha[:12]})" in crash[0], shown.stdout
