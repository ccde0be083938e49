"""A private copy of the example shop as a git repository, for flow tests.

Each test module gets its own app name, ports and configuration secrets (in the stack's moto
server: `<app>-<environment>-config`), so modules neither see each other nor a running demo,
and everything it deployed is removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import docker
import pytest
import yaml

from relay.platforms.docker import DockerPlatform
from relay.settings import relay_home
from relay.traffic import make_router

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop"
ID = ["-c", "user.name=Test Author", "-c", "user.email=author@example.invalid"]


@dataclass
class Shop:
    repo: Path
    app: str

    def commit(self, message: str) -> str:
        subprocess.run(["git", *ID, "add", "-A"], cwd=self.repo, check=True)
        subprocess.run(["git", *ID, "commit", "-qm", message], cwd=self.repo, check=True)
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=self.repo, capture_output=True, text=True, check=True
        ).stdout.strip()

    def edit_manifest(self, change: Any) -> None:
        manifest = yaml.safe_load((self.repo / "relay.yaml").read_text())
        change(manifest)
        (self.repo / "relay.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))

    def edit(self, path: str, old: str, new: str) -> None:
        file = self.repo / path
        text = file.read_text()
        assert old in text, f"{old!r} not in {path}"
        file.write_text(text.replace(old, new, 1))


def config_secret(app: str, environment: str) -> str:
    return f"{app}-{environment}-config"


# The four services that call each other; the example's catalog (a third-party dependency in
# its stage image) is left out unless a test asks for it, so that each test builds only what
# it exercises.
CALLING = ("gateway", "orders", "inventory", "payments")


@contextmanager
def shop_repository(
    factory: pytest.TempPathFactory,
    prefix: str,
    offsets: dict[str, int],
    services: tuple[str, ...] = CALLING,
) -> Iterator[Shop]:
    repo = factory.mktemp(prefix) / "shop"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    app = f"{prefix}-{uuid.uuid4().hex[:6]}"
    shop = Shop(repo, app)
    for directory in (repo / "services").iterdir():
        if directory.name not in services:
            shutil.rmtree(directory)

    def configure(manifest: dict[str, Any]) -> None:
        manifest["app"] = app
        manifest["services"] = {
            name: {**spec, "depends_on": [d for d in spec.get("depends_on", []) if d in services]}
            for name, spec in manifest["services"].items()
            if name in services
        }
        for name, offset in offsets.items():
            manifest["environments"][name]["port_offset"] = offset
            manifest["environments"][name]["secrets"] = config_secret(app, name)

    shop.edit_manifest(configure)
    secrets = boto3.client("secretsmanager")
    for name in offsets:
        secrets.create_secret(
            Name=config_secret(app, name),
            SecretString=json.dumps({"GREETING": f"hello from {name}"}),
        )
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(repo)], check=True)
    try:
        yield shop
    finally:
        with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
            for environment in offsets:
                router = make_router("haproxy", name=f"{app}-{environment}", home=relay_home())
                DockerPlatform(client, router).remove_all(app, environment)
                router.remove_managed_routes()
        for name in offsets:
            secrets.delete_secret(
                SecretId=config_secret(app, name), ForceDeleteWithoutRecovery=True
            )
