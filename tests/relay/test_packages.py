"""The package gate's parts: the judging (pure), the SBOM (cyclonedx-python-lib), pip-audit
against a PyPI JSON API (the stand-in of tests/advisories.py), and the package list read
from a real image on the stack's Docker engine."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import closing
from datetime import date
from pathlib import Path

import docker
import pytest

from relay.errors import TransientError
from relay.manifest import AllowedFinding
from relay.packages import (
    Advisory,
    Package,
    audit_packages,
    installed_packages,
    judge_advisories,
    make_sbom,
    sbom_packages,
)
from tests.advisories import JINJA2_IDS, advisory_index

TODAY = date(2026, 6, 1)
JINJA = Package("jinja2", "2.10")


def advisory(ident: str, *aliases: str, package: Package = JINJA) -> Advisory:
    return Advisory(ident, aliases, package, ("2.10.1",), "sandbox escape")


# --- judging -----------------------------------------------------------------------------------


def test_no_advisories_pass() -> None:
    assert judge_advisories([], "any", [], TODAY).passed


def test_an_advisory_without_an_allow_entry_stops_the_image() -> None:
    verdict = judge_advisories([advisory("PYSEC-2019-217")], "any", [], TODAY)

    assert not verdict.passed
    assert [row.advisory.id for row in verdict.blocking] == ["PYSEC-2019-217"]


def test_an_allow_entry_may_name_an_alias_such_as_the_cve() -> None:
    allow = [AllowedFinding(id="cve-2019-10906", reason="no sandbox", until=date(2026, 6, 1))]

    verdict = judge_advisories([advisory("PYSEC-2019-217", "CVE-2019-10906")], "any", allow, TODAY)

    assert verdict.passed
    assert verdict.rows[0].note == "allowed until 2026-06-01: no sandbox"


def test_an_expired_allow_entry_says_so_and_stops_the_image() -> None:
    allow = [AllowedFinding(id="PYSEC-2019-217", reason="no sandbox", until=date(2026, 5, 31))]

    verdict = judge_advisories([advisory("PYSEC-2019-217")], "any", allow, TODAY)

    assert not verdict.passed
    assert verdict.blocking[0].note == "allow entry PYSEC-2019-217 expired on 2026-05-31"


def test_never_reports_without_stopping() -> None:
    verdict = judge_advisories([advisory("PYSEC-2019-217")], "never", [], TODAY)

    assert verdict.passed and verdict.blocking == () and len(verdict.rows) == 1


# --- the SBOM ------------------------------------------------------------------------------------


def test_the_sbom_is_cyclonedx_with_a_package_url_per_package() -> None:
    image = "127.0.0.1:5000/shop/orders@sha256:" + "c" * 64
    packages = [JINJA, Package("pip", "23.2.1")]

    sbom = make_sbom(image, packages)
    document = json.loads(sbom)

    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    assert document["metadata"]["component"]["type"] == "container"
    assert document["metadata"]["component"]["version"] == "sha256:" + "c" * 64
    assert {c["purl"] for c in document["components"]} == {
        "pkg:pypi/jinja2@2.10",
        "pkg:pypi/pip@23.2.1",
    }
    assert sbom_packages(sbom) == sorted(packages)


# --- pip-audit ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index() -> Iterator[str]:
    with advisory_index() as url:
        yield url


def test_pip_audit_finds_the_advisories_of_a_vulnerable_release(index: str, tmp_path: Path) -> None:
    audit = audit_packages(
        [JINJA, Package("pip", "23.2.1"), Package("relay-private-lib", "1.0")],
        index,
        tmp_path,
    )

    assert [a.id for a in audit.advisories] == JINJA2_IDS
    first = audit.advisories[0]
    assert first.package == JINJA
    assert first.aliases == ("CVE-2019-10906", "GHSA-462w-v97r-4m45")
    assert first.fixed_in == ("2.10.1",)
    assert [(p.name, reason) for p, reason in audit.not_audited] == [
        (
            "relay-private-lib",
            "Dependency not found on PyPI and could not be audited: relay-private-lib (1.0)",
        )
    ]


def test_an_unreachable_index_is_transient(tmp_path: Path) -> None:
    with pytest.raises(TransientError, match="advisories of jinja2 from http://127.0.0.1:9/"):
        audit_packages([JINJA], "http://127.0.0.1:9/pypi", tmp_path, timeout=2)


# --- the package list, from a real image ------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as engine:
        yield engine


def jinja2_wheel(directory: Path) -> Path:
    """jinja2 2.10's wheel, from the package index."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(directory)]
        + ["--only-binary=:all:", "jinja2==2.10"],
        check=True,
    )
    (wheel,) = directory.glob("Jinja2-2.10-*.whl")
    return wheel


@pytest.mark.stack
def test_the_packages_installed_in_an_image_are_listed(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    wheel = jinja2_wheel(tmp_path)
    dockerfile = (
        "FROM python:3.11-slim\n"
        f"COPY {wheel.name} /tmp/\n"
        f"RUN python3 -m pip install -q --no-deps --no-index /tmp/{wheel.name}\n"
        "USER 65534\n"
    )
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        tar.add(wheel, arcname=wheel.name)
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile.encode()))
    context.seek(0)
    image, _ = client.images.build(
        fileobj=context,
        custom_context=True,
        tag="relay-test/jinja2:2.10",
        pull=False,
        network_mode="host",
        rm=True,
    )
    try:
        found = installed_packages(client, "relay-test/jinja2:2.10")
    finally:
        client.images.remove(image.id, force=True)

    assert found is not None
    assert JINJA in found
    assert "pip" in {p.name for p in found}
    assert not client.containers.list(all=True, filters={"label": "relay.purpose=package-list"})
