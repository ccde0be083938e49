"""The `control_plane` fixture: one real Kubernetes control plane per test session.

The binaries come from `scripts/k8s-testenv build` (cached per machine under
~/.cache/relay/k8s-testenv/; `make test` builds them first when Go is installed). Without Go
and without a built cache the tests here are skipped, saying how to build it. No Relay stack
(Docker, registry, Prefect) is needed.

    def test_x(control_plane):
        control_plane.kubeconfig        # Path of an admin kubeconfig (client certificate)
        api = control_plane.api_client()  # new kubernetes.client.ApiClient; close() it
        control_plane.server            # https://127.0.0.1:<port>
        control_plane.node_name         # "kwok-node-0", the one fake node
        control_plane.startup_seconds   # how long start() took
        control_plane.work_dir          # pki/, logs/<process>.log, etcd/, kwok.yaml

Images containing `never-ready` (tests.kubernetes.controlplane.NEVER_READY) never become
Ready; every other pod becomes Running and Ready as soon as it is scheduled.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kubernetes.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
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
