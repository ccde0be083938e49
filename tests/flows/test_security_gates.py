"""The security gates in the pipeline and the promotion, on the real stack, each stopped by a
real finding and passed by the clean example shop.

- SAST: a planted bandit issue; a non-Python command that writes SARIF; one that writes none.
- Compliance: a Dockerfile running as root (checkov's CKV_DOCKER_3 and Relay's RELAY_NON_ROOT).
- Packages: payments gets jinja2 2.10 (its wheel from the package index, installed in the
  image), and its advisories are published after it passed dev: the promotion to staging is
  refused naming them. An expired allow entry does not let it through; current ones do.

Advisories come from tests/advisories.py (PyPI's JSON API on 127.0.0.1): the package index
these machines reach serves no per-version JSON. Everything else is real: images, the
registry, checkov, pip-audit, the Prefect server.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from datetime import date, timedelta
from typing import Any

import docker
import pytest

from flows.promote import promote
from flows.release import release
from flows.service_pipeline import service_pipeline
from relay.errors import StageFailed
from relay.ledger import Ledger, Outcome
from relay.packages import sbom_packages, sbom_path
from relay.settings import ledger_path, relay_database
from tests.advisories import JINJA2_2_10, advisory_index
from tests.flows.shop import Shop, shop_repository

pytestmark = pytest.mark.stack

OFFSETS = {"dev": 20250, "staging": 21250, "prod": 22250}
FUTURE = date.today() + timedelta(days=365)
EXPIRED = date(2020, 1, 31)
PUBLISHED: dict[tuple[str, str], list[dict[str, Any]]] = {}  # what the stand-in serves now
SARIF = {
    "version": "2.1.0",
    "runs": [
        {
            "tool": {"driver": {"name": "tokenscan", "rules": [{"id": "TS001", "name": "Token"}]}},
            "results": [
                {
                    "ruleId": "TS001",
                    "level": "error",
                    "message": {"text": "a token is written in the source"},
                    "locations": [
                        {
                            "physicalLocation": {
                                "artifactLocation": {"uri": "app.py"},
                                "region": {"startLine": 7},
                            }
                        }
                    ],
                }
            ],
        }
    ],
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with (
        advisory_index(PUBLISHED) as index,
        shop_repository(tmp_path_factory, "secgate", OFFSETS) as shop,
    ):

        def advisories(manifest: dict[str, Any]) -> None:
            manifest["security"]["packages"] = {"advisories": index}

        shop.edit_manifest(advisories)
        yield shop


@pytest.fixture(scope="module")
def clean(shop: Shop) -> dict[str, str]:
    """The example shop released to dev through every gate: {service: image}."""
    commit = shop.commit("Initial shop")
    return {r.service: r.image for r in asyncio.run(release(str(shop.repo), commit))}


def pipeline(shop: Shop, service: str) -> Any:
    return asyncio.run(
        service_pipeline(str(shop.repo), shop.commit(f"Change {service}"), service, "dev")
    )


def head(shop: Shop) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=shop.repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def restore(shop: Shop, path: str, commit: str) -> None:
    """`path` as it was at `commit`, committed again."""
    subprocess.run(["git", "checkout", commit, "--", path], cwd=shop.repo, check=True)
    shop.commit(f"Restore {path}")


def dev_record(shop: Shop, service: str) -> Any:
    return Ledger(relay_database()).current(shop.app, "dev", service)


def test_the_clean_shop_passes_every_gate(shop: Shop, clean: dict[str, str]) -> None:
    assert set(clean) == {"gateway", "orders", "inventory", "payments"}
    for service, image in clean.items():
        record = dev_record(shop, service)
        assert record is not None and record.image == image
        assert record.outcome == Outcome.SUCCEEDED
        sbom = sbom_path(ledger_path().parent, image)
        assert "pip" in {p.name for p in sbom_packages(sbom.read_text())}
        assert (
            json.loads(sbom.read_text())["metadata"]["component"]["version"] == image.split("@")[1]
        )


def test_a_planted_bandit_issue_stops_the_pipeline_before_an_image_exists(
    shop: Shop, clean: dict[str, str]
) -> None:
    before = head(shop)
    shop.edit(
        "services/inventory/app.py",
        "import json",
        "import json\nimport subprocess\n\n\ndef debug(command):\n"
        "    return subprocess.call(command, shell=True)\n",
    )
    try:
        with pytest.raises(StageFailed) as refused:
            pipeline(shop, "inventory")
    finally:
        restore(shop, "services/inventory/app.py", before)

    message = str(refused.value)
    assert "inventory: 1 SAST finding(s) at or above high" in message
    assert "B602 subprocess_popen_with_shell_equals_true at ./app.py:" in message
    assert dev_record(shop, "inventory").image == clean["inventory"]


def test_a_command_writing_sarif_is_judged_by_its_findings(
    shop: Shop, clean: dict[str, str]
) -> None:
    before = head(shop)
    script = shop.repo / "services/payments/sast.sh"
    script.write_text(
        "mkdir -p reports\n"
        f"cat > reports/sast.sarif <<'EOF'\n{json.dumps(SARIF)}\nEOF\n"
        "exit 1  # findings: the tool's own verdict; Relay judges the report\n"
    )

    def sarif_command(manifest: dict[str, Any]) -> None:
        manifest["services"]["payments"]["sast"] = {
            "command": ["sh", "sast.sh"],
            "sarif": "reports/sast.sarif",
            "fail_on": "high",
        }

    shop.edit_manifest(sarif_command)
    with pytest.raises(StageFailed) as refused:
        pipeline(shop, "payments")
    assert "payments: 1 SAST finding(s) at or above high" in str(refused.value)
    assert "high TS001 Token at app.py:7: a token is written in the source" in str(refused.value)

    script.write_text("echo 'tokenscan: cannot parse app.py'\nexit 3\n")
    with pytest.raises(StageFailed) as crashed:
        pipeline(shop, "payments")
    assert "exited 3 without writing reports/sast.sarif" in str(crashed.value)
    assert "tokenscan: cannot parse app.py" in str(crashed.value)

    script.unlink()
    restore(shop, "relay.yaml", before)
    assert dev_record(shop, "payments").image == clean["payments"]


def test_a_dockerfile_running_as_root_fails_compliance_with_the_rule_and_fix(
    shop: Shop, clean: dict[str, str]
) -> None:
    before = head(shop)
    lines = (shop.repo / "services/inventory/Dockerfile").read_text().splitlines()
    final_from = max(n for n, line in enumerate(lines, start=1) if line.startswith("FROM "))
    shop.edit("services/inventory/Dockerfile", "USER 65534\n", "")
    try:
        with pytest.raises(StageFailed) as refused:
            pipeline(shop, "inventory")
    finally:
        restore(shop, "services/inventory/Dockerfile", before)

    message = str(refused.value)
    assert "inventory: 2 compliance violation(s) for dev:" in message
    assert (
        f"services/inventory/Dockerfile:{final_from}: RELAY_NON_ROOT the container does not run "
        "as root: "
        "add `USER 65534` (or another non-root user) as the Dockerfile's last USER; it has no USER"
    ) in message
    assert (
        "services/inventory/Dockerfile:1: CKV_DOCKER_3 Ensure that a user for the container has "
        "been created: add `USER 65534`"
    ) in message
    assert "security.compliance.skip: {id: " in message
    assert dev_record(shop, "inventory").image == clean["inventory"]  # nothing deployed


@pytest.fixture(scope="module")
def vulnerable(shop: Shop, clean: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """payments with jinja2 2.10 installed, released to dev before any advisory is published."""
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
        + ["-d", str(wheels), "jinja2==2.10"],
        check=True,
    )
    (wheel,) = wheels.glob("Jinja2-2.10-*.whl")
    (shop.repo / "services/payments" / wheel.name).write_bytes(wheel.read_bytes())
    shop.edit(
        "services/payments/Dockerfile",
        "USER 65534\n",
        f"COPY {wheel.name} /tmp/\n"
        f"RUN python3 -m pip install -q --no-deps --no-index /tmp/{wheel.name}\nUSER 65534\n",
    )
    commit = shop.commit("payments renders receipts with jinja2 2.10")
    released = {r.service: r for r in asyncio.run(release(str(shop.repo), commit))}
    assert released["payments"].built
    return released["payments"].image


def staging_containers(app: str) -> list[Any]:
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
        filters = {"label": [f"relay.app={app}", "relay.env=staging"]}
        return list(client.containers.list(all=True, filters=filters))


def test_a_vulnerable_package_stops_promotion_naming_the_advisories(
    shop: Shop, vulnerable: str
) -> None:
    PUBLISHED[("jinja2", "2.10")] = JINJA2_2_10  # published after payments passed dev

    with pytest.raises(StageFailed) as refused:
        asyncio.run(promote(str(shop.repo), "HEAD", "staging"))

    message = str(refused.value)
    assert "the security gates refused; nothing was deployed" in message
    assert f"payments: image {vulnerable.split('@')[1]} has 3 Python package advisories" in message
    assert (
        "jinja2 2.10: PYSEC-2019-217 (CVE-2019-10906, GHSA-462w-v97r-4m45); fixed in 2.10.1"
        in message
    )
    assert "jinja2 2.10: PYSEC-2021-66 (CVE-2020-28493, GHSA-g3rq-g295-4j3m)" in message
    assert "jinja2 2.10: CVE-2024-22195 (GHSA-h5c8-rqwp-cp95); fixed in 3.1.3" in message
    assert "security.packages.allow: {id: CVE-2024-22195, reason:" in message
    for service in ("gateway", "orders", "inventory"):
        assert f"{service}: image" not in message
    assert staging_containers(shop.app) == []


def allow(shop: Shop, entries: list[dict[str, Any]]) -> None:
    def change(manifest: dict[str, Any]) -> None:
        manifest["security"]["packages"]["allow"] = entries

    shop.edit_manifest(change)


def test_an_expired_allow_entry_does_not_let_it_through(shop: Shop, vulnerable: str) -> None:
    PUBLISHED[("jinja2", "2.10")] = JINJA2_2_10
    allow(
        shop,
        [
            {"id": "PYSEC-2019-217", "reason": "no sandboxed templates", "until": FUTURE},
            {"id": "CVE-2020-28493", "reason": "urlize unused", "until": EXPIRED},
            {"id": "GHSA-h5c8-rqwp-cp95", "reason": "xmlattr unused", "until": FUTURE},
        ],
    )
    with pytest.raises(StageFailed) as refused:
        pipeline(shop, "payments")

    message = str(refused.value)
    assert "has 1 Python package advisory" in message
    assert (
        "jinja2 2.10: PYSEC-2021-66 (CVE-2020-28493, GHSA-g3rq-g295-4j3m); fixed in 2.11.3 "
        "[allow entry CVE-2020-28493 expired on 2020-01-31]"
    ) in message
    assert "PYSEC-2019-217" not in message


def test_current_allow_entries_let_the_promotion_through(shop: Shop, vulnerable: str) -> None:
    PUBLISHED[("jinja2", "2.10")] = JINJA2_2_10
    allow(
        shop,
        [
            {"id": "PYSEC-2019-217", "reason": "no sandboxed templates", "until": FUTURE},
            {"id": "CVE-2020-28493", "reason": "urlize unused", "until": FUTURE},
            {"id": "GHSA-h5c8-rqwp-cp95", "reason": "xmlattr unused", "until": FUTURE},
        ],
    )
    commit = shop.commit("Accept jinja2 2.10's advisories for a year")
    dev = {r.service: r.image for r in asyncio.run(release(str(shop.repo), commit))}
    assert dev["payments"] == vulnerable  # same content: the same digest, not rebuilt

    staged = {r.service: r.image for r in asyncio.run(promote(str(shop.repo), commit, "staging"))}

    assert staged == dev
    record = Ledger(relay_database()).current(shop.app, "staging", "payments")
    assert record is not None and record.outcome == Outcome.SUCCEEDED
