"""The relay.yaml the manifest tests start from, and how they read its problems."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from relay.errors import ManifestError
from relay.manifest import load_manifest

SERVICES = """\
services:
  gateway:
    path: services/gateway
    port: 8000
    depends_on: [orders]
  orders:
    path: services/orders
    port: 8002
    depends_on: [inventory, payments]
  inventory:
    path: services/inventory
    port: 8001
  payments:
    path: services/payments
    port: 8003
"""
VALID = "app: shop\n" + SERVICES


def write(tmp_path: Path, text: str, *, scaffold: bool = True) -> Path:
    """Write `relay.yaml` and, unless told not to, every service directory with a Dockerfile."""
    path = tmp_path / "relay.yaml"
    path.write_text(textwrap.dedent(text))
    if scaffold:
        for name in ("gateway", "orders", "inventory", "payments"):
            (tmp_path / "services" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "services" / name / "Dockerfile").write_text("FROM scratch\n")
    return path


def problems(tmp_path: Path, text: str, *, scaffold: bool = True) -> list[str]:
    """The problems `load_manifest` reports, without the leading `<file>: `."""
    path = write(tmp_path, text, scaffold=scaffold)
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert caught.value.path == path
    prefix = f"{path}: "
    assert all(problem.startswith(prefix) for problem in caught.value.problems)
    return [problem.removeprefix(prefix) for problem in caught.value.problems]


def with_environments(environments: str) -> str:
    return VALID + textwrap.dedent(environments)
