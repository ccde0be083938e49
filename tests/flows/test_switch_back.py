"""Blue/green's instant switch back, on the real stack: after a switch the previous version
keeps running without traffic for `keep_previous_seconds` while the deploy ends; `relay
rollback` within that window moves traffic back through HAProxy alone, starting no container,
under load without a failed request, and the ledger says so. A release that has not served
staging for production's `soak_seconds` is not promoted yet; and a version that starts failing
while it is watched after its switch (`watch_seconds`) is put back, recorded as such."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import docker
import pytest

from flows.promote import promote
from flows.release import release
from flows.rollback import rollback
from relay.errors import RolledBack, TerminalError
from relay.ledger import Ledger, Outcome
from relay.platforms.docker import kept_versions
from relay.settings import relay_database, relay_home
from tests.echo import Load
from tests.flows.shop import Shop, shop_repository

pytestmark = pytest.mark.stack

OFFSETS = {"dev": 17000, "staging": 17250, "prod": 18000}
KEEP_SECONDS = 600  # far above a release's time on a busy machine (one took 66 s)
SOAK_SECONDS = 3600
URL = f"http://127.0.0.1:{8004 + OFFSETS['staging']}/version"


def blue_green_staging(manifest: dict[str, Any]) -> None:
    staging = manifest["environments"]["staging"]
    staging.update(strategy="blue_green", keep_previous_seconds=KEEP_SECONDS)
    manifest["environments"]["prod"]["soak_seconds"] = SOAK_SECONDS


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with shop_repository(tmp_path_factory, "keep", OFFSETS, services=("payments",)) as shop:
        shop.edit_manifest(blue_green_staging)
        yield shop


def containers(app: str) -> dict[str, str]:
    """Running container id -> the commit it runs, of the app's staging."""
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
        return {
            str(c.id): c.labels["relay.commit"]
            for c in client.containers.list(
                filters={"label": [f"relay.app={app}", "relay.env=staging"]}
            )
        }


def version() -> str:
    with urllib.request.urlopen(URL, timeout=5) as response:
        return str(json.load(response)["version"])


def test_a_rollback_within_the_window_switches_back_without_starting_a_container(
    shop: Shop,
) -> None:
    v1 = shop.commit("payments v1")
    asyncio.run(release(str(shop.repo), v1, through="staging"))
    shop.edit("services/payments/app.py", '"""', '"""Payments v2.\n')
    v2 = shop.commit("payments v2")
    started = time.monotonic()
    asyncio.run(release(str(shop.repo), v2, base=v1, through="staging"))
    assert time.monotonic() - started < KEEP_SECONDS, "the release did not wait out the window"
    [kept] = [k for k in kept_versions(relay_home()) if k.app == shop.app]
    assert not kept.expired and kept.image != "", "it ended with v1 kept, its window open"
    assert version() == v2
    before = containers(shop.app)
    assert sorted(before.values()) == sorted([v1, v2]), "v1 is kept running beside v2"

    with Load(URL) as load:
        load.wait_for_more(20)
        asyncio.run(rollback(str(shop.repo), "payments", "staging"))
        load.wait_for_more(20)

    assert version() == v1
    after = containers(shop.app)
    assert set(after) < set(before), "no container started; v2's was removed"
    assert list(after.values()) == [v1]
    assert not load.transport_errors, load.transport_errors[:3]
    assert {status for _, _, status in load.log} == {200}, "no client request failed"
    seen = [v for _, v, _ in load.log]
    assert seen[0] == v2 and seen[-1] == v1 and seen.index(v1) == len(seen) - seen[::-1].index(v2)
    record = Ledger(relay_database()).current(shop.app, "staging", "payments")
    assert record is not None and record.commit == v1 and record.strategy == "rollback"
    assert "switched back to the kept previous version" in (record.comment or "")


def test_a_promotion_before_the_soak_time_is_refused_saying_when_it_may_go(shop: Shop) -> None:
    staged = Ledger(relay_database()).current(shop.app, "staging", "payments")
    assert staged is not None, "the release above serves staging"
    with pytest.raises(TerminalError) as refused:
        asyncio.run(promote(str(shop.repo), staged.commit, "prod"))
    message = str(refused.value)
    assert "environments.prod.soak_seconds" in message and "nothing was deployed" in message
    ready = staged.ended_at.timestamp() + SOAK_SECONDS
    assert (
        f"may be promoted to prod at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(ready))} UTC"
        in message
    )
    assert Ledger(relay_database()).current(shop.app, "prod", "payments") is None


# Payments that answers /version with 500 from 2 s after it started, in staging only (dev's
# integration tests pass): it passes its health checks and takes all traffic, then fails.
FAILS_LATER = """    def version(self, params, raw, request_id):
        import os, time
        staging = os.environ.get("RELAY_ENVIRONMENT") == "staging"
        late = staging and time.monotonic() - self.started > 2
        return (500 if late else 200), {"service": SERVICE, "version": self.service_version}
"""


def test_a_version_failing_while_watched_after_its_switch_is_put_back(shop: Shop) -> None:
    before = Ledger(relay_database()).current(shop.app, "staging", "payments")
    assert before is not None
    shop.edit_manifest(lambda m: m["environments"]["staging"].update(watch_seconds=6))
    app = shop.repo / "services/payments/app.py"
    started = "        self.started = __import__('time').monotonic()\n"
    code = app.read_text().replace("    def healthz(", started + "\n    def healthz(", 1)
    start = code.index("    def version(self, params, raw, request_id):")
    end = code.index("    def charge(", start)
    app.write_text(code[:start] + FAILS_LATER + "\n" + code[end:])
    late = shop.commit("payments that fails a while after it starts")

    with Load(URL) as load, pytest.raises(RolledBack, match="failed while watched") as failed:
        asyncio.run(release(str(shop.repo), late, base=before.commit, through="staging"))
    assert "error rate" in str(failed.value)
    assert version() == before.commit, "the previous version serves again"
    assert any(v == late for _, v, _ in load.log), "the new version took traffic first"
    [record] = Ledger(relay_database()).history(shop.app, "payments", "staging", limit=1)
    assert record.outcome == Outcome.WATCH_FAILED and record.commit == late
    assert "failed while watched with all traffic after the switch" in record.reason


def test_a_metrics_source_unreadable_while_watched_puts_the_previous_version_back(
    shop: Shop,
) -> None:
    """`on_inconclusive: fail` (the default): a watch that could not read its metrics saw
    nothing, and nothing seen is not a pass."""
    before = Ledger(relay_database()).current(shop.app, "staging", "payments")
    assert before is not None
    nowhere = "http://127.0.0.1:9"  # discard: nothing listens there
    shop.edit_manifest(
        lambda m: m["environments"]["staging"].update(
            watch_seconds=2, analysis={"metrics": "prometheus", "prometheus": {"address": nowhere}}
        )
    )
    shop.edit("services/payments/app.py", '"""', '"""Payments, watched blind.\n')
    blind = shop.commit("payments watched without metrics")

    with pytest.raises(RolledBack, match="failed while watched") as failed:
        asyncio.run(release(str(shop.repo), blind, base=before.commit, through="staging"))
    assert f"Prometheus at {nowhere} could not be reached" in str(failed.value)
    assert version() == before.commit, "the previous version serves again"
