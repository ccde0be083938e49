"""Build stages in containers, on the real stack, with an application laid out unlike the shop:
one service at the root of its repository (relay.yaml next to its Dockerfile) whose unit tests
import a package Relay's own environment does not have (Babel, from requirements.txt).

Its stages run in the Dockerfile's `test` stage, or in a stage image with a setup command, or
on the worker (`runner: host`, where that import fails: what made Relay's tests pass only when
Relay happened to depend on the same package). A unit test also checks that a file planted on
the worker, outside the service's directory, cannot be read from it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from flows.release import release
from relay.errors import ManifestError, StageFailed
from relay.platforms.docker import DockerPlatform
from relay.settings import relay_home
from relay.traffic import make_router
from tests.flows.shop import EXAMPLE

pytestmark = pytest.mark.stack

RELAY = str(Path(sys.executable).parent / "relay")
ID = ["-c", "user.name=Test Author", "-c", "user.email=author@example.invalid"]
OFFSET = 15000
CATALOG = EXAMPLE / "services" / "catalog"
PLANTED = relay_home() / f"planted-{uuid.uuid4().hex[:8]}.txt"
NOT_READABLE = f"""
from pathlib import Path


def test_the_workers_files_are_out_of_reach():
    for path in ({str(PLANTED)!r}, {str(relay_home() / "docker.sock")!r}):
        assert not Path(path).exists(), f"a stage command can read {{path}} on the worker"
"""
SAST_FINDING = (
    "import subprocess\n\n\ndef shell(command):\n    return subprocess.call(command, shell=True)\n"
)


class App:
    """The one-service application, a git repository of its own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = f"cat-{uuid.uuid4().hex[:6]}"

    def manifest(self, **catalog: Any) -> None:
        document = {
            "app": self.name,
            "services": {"catalog": {"path": ".", "port": 8005, **catalog}},
            "environments": {"dev": {"port_offset": OFFSET, "secrets": None}},
        }
        (self.root / "relay.yaml").write_text(yaml.safe_dump(document, sort_keys=False))

    def commit(self, message: str) -> str:
        subprocess.run(["git", *ID, "add", "-A"], cwd=self.root, check=True)
        subprocess.run(["git", *ID, "commit", "-qm", message], cwd=self.root, check=True)
        head = ["git", "rev-parse", "HEAD"]
        return subprocess.run(
            head, cwd=self.root, capture_output=True, text=True, check=True
        ).stdout.strip()

    def release(self, sha: str) -> list[Any]:
        return asyncio.run(release(str(self.root), sha))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    root = tmp_path_factory.mktemp("stages") / "catalog"
    shutil.copytree(CATALOG, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    (root / "tests" / "unit" / "test_isolation.py").write_text(NOT_READABLE)
    made = App(root)
    made.manifest()
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(root)], check=True)
    PLANTED.write_text("the worker's secret\n")
    try:
        yield made
    finally:
        PLANTED.unlink(missing_ok=True)
        with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
            router = make_router("haproxy", name=f"{made.name}-dev", home=relay_home())
            DockerPlatform(client, router).remove_all(made.name, "dev")
            router.remove_managed_routes()
            for image in client.images.list(name=f"relay-stage/{made.name}-catalog"):
                client.images.remove(image.id, force=True)


def table(key: str) -> list[dict[str, Any]]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert found, f"no artifact {key}"
    data = found[0].data
    return list(json.loads(data) if isinstance(data, str) else data)


def summary(app: App) -> str:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"{app.name}-catalog-dev-summary"])
            ),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return str(found[0].data)


@pytest.fixture(scope="module")
def first(app: App) -> list[Any]:
    """The Dockerfile's `test` stage (Relay's default when there is one)."""
    return app.release(app.commit("Catalog"))


def test_unit_tests_that_need_the_services_own_package_pass_in_its_test_stage(
    app: App, first: list[Any]
) -> None:
    [result] = first
    assert result.built and result.changed
    rows = table(f"{app.name}-catalog-unit-tests")
    names = {row["test"].split("::")[-1]: row["outcome"] for row in rows}
    assert names["test_every_product_is_listed_with_its_price"] == "passed", "Babel was there"
    assert names["test_the_workers_files_are_out_of_reach"] == "passed"
    text = summary(app)
    assert f"relay-stage/{app.name}-catalog:target-test-" in text, "where the stages ran"


def test_on_the_worker_the_services_package_is_missing(app: App, first: list[Any]) -> None:
    app.manifest(runner="host")
    with pytest.raises(StageFailed) as failed:
        app.release(app.commit("Stages on the worker"))
    message = str(failed.value)
    assert "catalog: unit tests failed" in message and "the worker (runner: host)" in message
    assert "babel is not installed on the worker" in message, message


def test_on_the_worker_the_planted_file_is_readable(app: App, first: list[Any]) -> None:
    """The same isolation test fails on the worker: the container is what keeps it out."""
    app.manifest(runner="host", unit_tests="python -m pytest -q tests/unit/test_isolation.py")
    with pytest.raises(StageFailed, match="catalog: unit tests failed .*1 failed"):
        app.release(app.commit("The isolation test on the worker"))
    rows = table(f"{app.name}-catalog-unit-tests")
    assert [(r["test"].split("::")[-1], r["outcome"]) for r in rows] == [
        ("test_the_workers_files_are_out_of_reach", "failed")
    ]


@pytest.fixture(scope="module")
def with_setup(app: App, first: list[Any]) -> tuple[list[Any], list[Any]]:
    """A stage image with a setup instead of the Dockerfile's test stage; then a change to the
    code only, which reuses the setup's layer."""
    app.manifest(
        stage_image="python:3.11-slim",
        setup="pip install --no-cache-dir -r requirements.txt pytest==8.3.4 bandit==1.9.4",
    )
    once = app.release(app.commit("A stage image with a setup"))
    (app.root / "app.py").write_text(
        (app.root / "app.py").read_text().replace('"Widget"', '"Widget XL"')
    )
    again = app.release(app.commit("Rename the widget"))
    return once, again


def test_a_stage_image_with_a_setup_runs_them_and_installs_once(
    app: App, with_setup: tuple[list[Any], list[Any]]
) -> None:
    once, again = with_setup
    assert once[0].built and again[0].built, "the code changed: the service image is built"
    assert "built in" in once[0].notes["stage-image"]
    assert "cached" in again[0].notes["stage-image"], again[0].notes
    assert "when it was built" in again[0].notes["stage-image"]
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
        tags = [
            t for i in client.images.list(name=f"relay-stage/{app.name}-catalog") for t in i.tags
        ]
    assert len([t for t in tags if ":setup-" in t]) == 1, "one setup image: installed once"


def test_a_failing_unit_test_fails_the_stage_and_its_table_names_it(
    app: App, with_setup: tuple[list[Any], list[Any]]
) -> None:
    broken = app.root / "tests/unit/test_broken.py"
    broken.write_text("def test_prices_add_up():\n    assert 1 + 1 == 3\n")
    try:
        with pytest.raises(StageFailed, match="catalog: unit tests failed .*1 failed"):
            app.release(app.commit("A red unit test"))
        rows = table(f"{app.name}-catalog-unit-tests")
        failing = [r for r in rows if r["test"].endswith("test_prices_add_up")]
        assert [(r["outcome"], "assert (1 + 1) == 3" in r["message"]) for r in failing] == [
            ("failed", True)
        ]
        assert sum(r["outcome"] == "passed" for r in rows) == len(rows) - 1
    finally:
        broken.unlink()


def test_a_planted_bandit_issue_is_found_in_the_container(
    app: App, with_setup: tuple[list[Any], list[Any]]
) -> None:
    planted = app.root / "shell.py"
    planted.write_text(SAST_FINDING)
    try:
        with pytest.raises(StageFailed, match=r"catalog: 1 SAST finding\(s\) at or above high"):
            app.release(app.commit("subprocess with shell=True"))
        rows = table(f"{app.name}-catalog-sast")
        assert ("high", "B602 subprocess_popen_with_shell_equals_true", "./shell.py:5") in [
            (r["severity"], r["rule"], r["where"]) for r in rows
        ]
    finally:
        planted.unlink()


def test_a_path_that_leaves_the_repository_is_refused_naming_the_link(
    app: App, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM python:3.11-slim\n")
    (app.root / "Dockerfile.linked").symlink_to(outside / "Dockerfile")
    app.manifest(dockerfile="Dockerfile.linked")
    try:
        validated = subprocess.run(
            [RELAY, "validate", str(app.root / "relay.yaml")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert validated.returncode == 2
        assert (
            "services.catalog.dockerfile: 'Dockerfile.linked' is a symbolic link to"
            in validated.stderr
        )
        assert "outside the repository" in validated.stderr
        sha = app.commit("A Dockerfile from elsewhere")
        with pytest.raises(ManifestError, match="'Dockerfile.linked' is a symbolic link"):
            app.release(sha)
    finally:
        (app.root / "Dockerfile.linked").unlink()
        app.manifest()
        app.commit("The Dockerfile of the repository")
