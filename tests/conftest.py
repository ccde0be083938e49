"""Shared test set-up: one local stack per test session, reached like any Relay process does.

`make test` brings the stack up (scripts/with-stack); tests marked `stack` use the real Docker
engine, registry, HAProxy, moto and Prefect server in it. Prefect reads its settings at import
time, so the stack's environment is exported here, before anything imports prefect.
"""

from __future__ import annotations

import os

import devstack

for _key, _value in devstack.environment().items():
    os.environ.setdefault(_key, _value)
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.3")

import shutil  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path: Unix sockets (HAProxy's admin socket) allow
    about 100 characters, and pytest's tmp_path grows with its run counter."""
    path = Path(tempfile.mkdtemp(prefix="relay-t-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Kubernetes tests run last: on a fresh machine their control plane is still being built
    in the background (scripts/test) while the rest runs. And fail loudly, not skip, when the
    stack is down: these tests are the point of the suite."""
    items.sort(key=lambda item: "tests/kubernetes/" in item.nodeid)
    if not any(item.get_closest_marker("stack") for item in items):
        return
    if not devstack.status().all_running:
        raise pytest.UsageError(
            "the local stack is not running; run `make test` (which starts it) "
            "or `.venv/bin/relay stack up` first"
        )
