"""Fixtures of the reliability suite: a private stack to break, and shops deployed on it.

One private stack per session (about 30 s to start) serves every fault test that stops a stack
component; it is stopped by PID at the end (``devstack down`` on its own home). Set
``RELAY_RELIABILITY_HOME`` to the home of a private stack started earlier (same ports in
``RELAY_RELIABILITY_PORTS=prefect,moto,registry``) to reuse it while working on a test; it is
then left running.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import docker
import pytest
import yaml

from relay.platforms.docker import DockerPlatform
from relay.traffic import make_router
from tests.reliability.privatestack import PrivateStack

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop"
ID = ["-c", "user.name=Test Author", "-c", "user.email=author@example.invalid"]
# Host networking: private containers still bind host ports; these ranges are unused elsewhere.
PRIVATE_OFFSETS = {"dev": 15750, "staging": 16750, "prod": 17750}


@pytest.fixture(scope="session")
def private_stack() -> Iterator[PrivateStack]:
    reuse = os.environ.get("RELAY_RELIABILITY_HOME")
    if reuse:
        ports = (int(p) for p in os.environ["RELAY_RELIABILITY_PORTS"].split(","))
        stack = PrivateStack(Path(reuse), *ports)
        stack.up()
        yield stack
        return
    stack = PrivateStack.create()
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@dataclass
class PrivateShop:
    """A git copy of examples/shop released through a private stack."""

    repo: Path
    app: str
    stack: PrivateStack

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *ID, *args], cwd=self.repo, check=True, capture_output=True, text=True
        ).stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-qm", message)
        return self.git("rev-parse", "HEAD")

    def edit(self, path: str, old: str, new: str) -> None:
        file = self.repo / path
        text = file.read_text()
        assert old in text, f"{old!r} not in {path}"
        file.write_text(text.replace(old, new, 1))

    def docker(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.stack.env["DOCKER_HOST"], timeout=60)

    def platform(self, client: docker.DockerClient, environment: str) -> DockerPlatform:
        router = make_router("haproxy", name=f"{self.app}-{environment}", home=self.stack.home)
        return DockerPlatform(client, router)


def _secrets(stack: PrivateStack) -> Any:
    return boto3.client(
        "secretsmanager",
        endpoint_url=f"http://127.0.0.1:{stack.moto_port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@contextmanager
def private_shop(
    stack: PrivateStack,
    factory: pytest.TempPathFactory,
    prefix: str,
    change: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[PrivateShop]:
    """The shop on `stack`'s registry, moto and ports; everything it deployed is removed."""
    repo = factory.mktemp(prefix) / "shop"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    app = f"{prefix}-{uuid.uuid4().hex[:6]}"
    manifest = yaml.safe_load((repo / "relay.yaml").read_text())
    manifest["app"] = app
    manifest["registry"] = stack.registry
    for name, offset in PRIVATE_OFFSETS.items():
        env = manifest["environments"][name]
        env["port_offset"] = offset
        env["secrets"] = f"{app}-{name}-config"
    if change is not None:
        change(manifest)
    (repo / "relay.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    secrets = _secrets(stack)
    for name in PRIVATE_OFFSETS:
        secrets.create_secret(
            Name=f"{app}-{name}-config", SecretString=json.dumps({"GREETING": f"hi {name}"})
        )
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(repo)], check=True)
    shop = PrivateShop(repo, app, stack)
    try:
        yield shop
    finally:
        with closing(shop.docker()) as client:
            for environment in PRIVATE_OFFSETS:
                platform = shop.platform(client, environment)
                platform.remove_all(app, environment)
                platform.router.remove_managed_routes()
