"""`relay run` as a user sees it, a real subprocess on the stack without a terminal: progress
while the release goes, one clear message when it cannot."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from tests.flows.shop import ID, Shop, shop_repository

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
OFFSETS = {"dev": 12250}
SERVICES = ("inventory", "payments")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with shop_repository(tmp_path_factory, "cliruns", OFFSETS, services=SERVICES) as shop:
        shop.commit("the shop")
        yield shop


class Watched:
    """A `relay` process with each line of its standard error timed as it arrives."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[tuple[float, str]] = []
        self.stdout: list[str] = []
        self.readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        self.stdout = self.process.stdout.readlines()

    def wait(self, timeout: float) -> tuple[int, float, str, str]:
        """Exit code, when it exited, standard output and standard error."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        ended = time.monotonic()
        for reader in self.readers:
            reader.join(timeout=10)
        return code, ended, "".join(self.stdout), "\n".join(t for _, t in self.lines)


def test_a_release_shows_each_services_stages_as_they_start(shop: Shop) -> None:
    run = Watched(["run", "--repo", str(shop.repo)], cwd=shop.repo)
    code, ended, stdout, stderr = run.wait(timeout=600)
    assert code == 0, stderr[-3000:]
    for service in SERVICES:
        for stage in ("build-image", "compile-service", "start-new-version"):
            assert f"{service} dev: {stage}" in stderr, (service, stage, stderr)
        assert f"{service}" in stdout and "deployed" in stdout
    # Shown while the release ran, not printed at its end: the first build started long
    # before the last deployment finished.
    first = next(t for t, line in run.lines if "dev: build-image" in line)
    assert ended - first > 10, [(round(ended - t, 1), line) for t, line in run.lines]
    assert "Finished in state" not in stderr  # Prefect's own lines are in the log file
    log = next(line for line in stderr.splitlines() if "Prefect's log:" in line)
    assert "Finished in state Completed" in Path(log.split(": ", 2)[2].split(" ")[0]).read_text()


def without_its_secret(shop: Shop) -> str:
    def missing(manifest: dict[str, Any]) -> None:
        manifest["environments"]["dev"]["secrets"] = f"{shop.app}-no-such-secret"

    shop.edit_manifest(missing)
    return shop.commit("dev reads a secret that does not exist")


def test_an_expected_failure_is_one_message_naming_the_users_relay_yaml(shop: Shop) -> None:
    commit = without_its_secret(shop)
    try:
        code, _, stdout, stderr = Watched(
            ["run", "--repo", ".", "--ref", commit], cwd=shop.repo
        ).wait(timeout=300)
        assert code == 1, stderr
        assert "Traceback" not in stderr + stdout
        assert stderr.count("not found in AWS Secrets Manager") == 1, stderr
        assert f"environments.dev.secrets in {shop.repo}/relay.yaml" in stderr
        assert "/relay/work/" not in stderr  # Relay's checkout cache
        assert stderr.splitlines()[-1].startswith("relay: the whole log: ")

        _, _, _, verbose = Watched(
            ["run", "--repo", ".", "--ref", commit, "--verbose"], cwd=shop.repo
        ).wait(timeout=300)
        assert "Traceback" in verbose and "Finished in state Failed" in verbose
    finally:
        subprocess.run(["git", *ID, "revert", "--no-edit", "HEAD"], cwd=shop.repo, check=True)


def test_a_service_without_tests_releases_and_the_summary_says_they_were_skipped(
    shop: Shop,
) -> None:
    def no_tests(manifest: dict[str, Any]) -> None:
        manifest["services"]["inventory"]["unit_tests"] = None
        manifest["services"]["inventory"]["integration_tests"] = None

    shop.edit_manifest(no_tests)
    shop.edit("services/inventory/app.py", '"""', '"""No tests. ')
    shop.commit("inventory declares no unit or integration tests")
    code, _, stdout, stderr = Watched(["run", "--repo", "."], cwd=shop.repo).wait(timeout=600)
    assert code == 0, stderr[-3000:]
    assert "inventory dev: build-image" in stderr and "inventory dev: run-unit-tests" not in stderr
    with get_client(sync_client=True) as client:
        summary = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"{shop.app}-inventory-dev-summary"])
            ),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )[0]
    rows = {
        line.split("|")[1].strip(): line
        for line in str(summary.data).splitlines()
        if line.startswith("| ")
    }
    assert "skipped: unit_tests: null in relay.yaml" in rows["unit-tests"]
    assert "skipped" in rows["integration-tests"]


def test_retry_finishes_a_failed_release_without_rebuilding(shop: Shop) -> None:
    """payments cannot start (its next slot's port is taken): inventory is deployed, payments
    fails. Once the port is free, `relay retry` deploys payments with the images already built
    and leaves inventory as it is."""
    for service in SERVICES:
        shop.edit(
            f"services/{service}/app.py",
            '"""',
            '"""Retried. ',
        )
    shop.commit("both services change")
    held = _hold_free_slots(8004 + OFFSETS["dev"])  # payments' public port, in dev
    try:
        code, _, _, failed = Watched(["run", "--repo", "."], cwd=shop.repo).wait(timeout=600)
    finally:
        for sock in held:
            sock.close()
    assert code == 1, failed
    assert "payments" in failed and "Address already in use" in failed
    hint = next(line for line in failed.splitlines() if "relay retry " in line)
    run_id = hint.split("relay retry ", 1)[1].split()[0]

    code, _, stdout, stderr = Watched(["retry", run_id], cwd=shop.repo).wait(timeout=600)
    assert code == 0, stderr[-3000:]
    assert "build-image" not in stderr  # the images of the failed run, found by their key
    assert "dev: find-image" in stderr
    results = {line.split()[0]: line.split()[1] for line in stdout.splitlines() if line.strip()}
    assert results == {"inventory": "unchanged", "payments": "deployed"}


def _hold_free_slots(public: int) -> list[socket.socket]:
    """Listen on the service's slot ports that are free, so the next version cannot bind."""
    held = []
    for port in (public + 100, public + 200):
        sock = socket.socket()
        # As servers do: a port whose last connections are in TIME_WAIT is free to listen on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            held.append(sock)
        except OSError:  # the slot that serves now
            sock.close()
    assert held, "no slot port was free"
    return held


def test_cancel_during_a_canary_puts_the_previous_version_back(shop: Shop) -> None:
    def slow_canary(manifest: dict[str, Any]) -> None:
        dev = manifest["environments"]["dev"]
        dev["strategy"] = "canary"
        dev["canary_steps"] = [50, 100]
        dev["analysis"] = {"interval_seconds": 120, "min_requests": 1}

    url = f"http://127.0.0.1:{8003 + OFFSETS['dev']}/version"
    serving = _version(url)
    shop.edit_manifest(slow_canary)
    shop.edit("services/inventory/app.py", '"""', '"""Cancelled. ')
    shop.commit("inventory changes, dev judges canaries for two minutes")
    run = Watched(["run", "--repo", "."], cwd=shop.repo)
    deadline = time.monotonic() + 300
    while not any("inventory dev: set-weight-50%" in line for _, line in run.lines):
        assert run.process.poll() is None and time.monotonic() < deadline, run.lines
        time.sleep(0.5)
    run_id = next(line for _, line in run.lines if line.startswith("release-")).split()[1]

    cancelled = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "cancel", run_id, "--wait", "60"],
        capture_output=True, text=True, timeout=120, cwd=shop.repo,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert cancelled.returncode == 0, cancelled.stderr
    assert "Cancelled" in cancelled.stdout
    code, _, _, stderr = run.wait(timeout=60)
    assert code == 1, stderr
    assert "was cancelled" in stderr and "the previous version serves" in stderr, stderr
    assert "inventory dev: abort-rollout" in stderr, stderr
    assert {_version(url) for _ in range(10)} == {serving}
    history = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "history", "inventory", "--env", "dev"],
        capture_output=True, text=True, timeout=60, cwd=shop.repo,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout.splitlines()  # fmt: skip
    assert "rolled_back" in history[1] and "cancelled" in history[1], history


def _version(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(json.loads(response.read())["version"])
