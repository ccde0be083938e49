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
# A stack with several workers spreads service pipelines over them (RELAY_SERVICE_RUNS); the
# suite runs them in-process, as on one machine, but where a test asks otherwise
# (tests/flows/test_workers.py). The commands that tests start inherit this.
os.environ["RELAY_SERVICE_RUNS"] = "in-process"

import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from devstack import postgres as postgres_cluster  # noqa: E402
from devstack.controlplane import ControlPlane  # noqa: E402


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
    items.sort(key=lambda item: "control_plane" in getattr(item, "fixturenames", ()))
    if not any(item.get_closest_marker("stack") for item in items):
        return
    if not devstack.status().all_running:
        raise pytest.UsageError(
            "the local stack is not running; run `make test` (which starts it) "
            "or `.venv/bin/relay stack up` first"
        )


# --- the Kubernetes test control plane -------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
TESTENV = ROOT / "scripts" / "k8s-testenv"
HOW = "build it with `scripts/k8s-testenv build` (needs Go >= 1.26 on PATH; `make test` does it)"


def _bin_dir() -> Path:
    """The cached bin dir; builds it when Go is there; skips when neither is."""
    path = subprocess.run([TESTENV, "path"], capture_output=True, text=True)
    if path.returncode == 0:
        return Path(path.stdout.strip())
    if shutil.which("go") is None:
        pytest.skip(f"Kubernetes test control plane not built and Go not installed: {HOW}")
    build = subprocess.run([TESTENV, "build"], capture_output=True, text=True)
    if build.returncode != 0:
        pytest.fail(f"scripts/k8s-testenv build failed:\n{build.stdout}\n{build.stderr}")
    path = subprocess.run([TESTENV, "path"], capture_output=True, text=True, check=True)
    return Path(path.stdout.strip())


@pytest.fixture(scope="session")
def control_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """One real Kubernetes control plane per test session.

    The binaries come from `scripts/k8s-testenv build` (cached per machine under
    ~/.cache/relay/k8s-testenv/; `make test` builds them first when Go is installed). Without Go
    and without a built cache the tests using it are skipped, saying how to build it. No Relay stack
    (Docker, registry, Prefect) is needed.

        def test_x(control_plane):
            control_plane.kubeconfig        # Path of an admin kubeconfig (client certificate)
            api = control_plane.api_client()  # new kubernetes.client.ApiClient; close() it
            control_plane.server            # https://127.0.0.1:<port>
            control_plane.node_name         # "kwok-node-0", the one fake node
            control_plane.startup_seconds   # how long start() took
            control_plane.work_dir          # pki/, logs/<process>.log, etcd/, kwok.yaml

    Images containing `never-ready` (devstack.controlplane.NEVER_READY) never become
    Ready; every other pod becomes Running and Ready as soon as it is scheduled.
    """
    cp = ControlPlane(_bin_dir(), tmp_path_factory.mktemp("k8s-control-plane"))
    with cp:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(
                    f"\nKubernetes control plane ready in {cp.startup_seconds} s at "
                    f"{cp.server} (logs: {cp.logs})"
                )
        yield cp


# --- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[postgres_cluster.Cluster]:
    """One throwaway PostgreSQL cluster per test session (per xdist worker): Debian's
    postgresql, installed by scripts/install-deps, on a free loopback port; stopped at the end.
    Tests make a database of their own in it (`fresh_database`)."""
    with postgres_cluster.cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres: postgres_cluster.Cluster) -> str:
    """A new, empty database in the session's cluster: a SQLAlchemy URL (psycopg driver)."""
    return postgres.create_database(f"t{uuid.uuid4().hex[:12]}")
