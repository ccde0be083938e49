"""Traces and notifications of real releases on the local stack.

Spans go over OTLP/HTTP to a receiver on 127.0.0.1 (tests/receivers.py), exported by the SDK
provider `tasks.support.tracing` installs; notifications go through a Prefect Custom Webhook block
(Slack's `{"text": ...}` body) to another receiver. One service of a two-service shop is
released, changed, released again and rolled back.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock

from flows.release import release
from flows.rollback import rollback
from relay.errors import TerminalError
from relay.ledger import Ledger
from relay.settings import relay_database
from tasks.support.notify import NOTIFY_BLOCK_ENV
from tasks.support.tracing import configure_tracing
from tests.flows.shop import Shop, shop_repository
from tests.receivers import Received, ReceivedSpan, http_receiver

pytestmark = pytest.mark.stack

OFFSETS = {"dev": 20750, "staging": 21750, "prod": 22750}


def leaves_only(manifest: dict[str, object]) -> None:
    """inventory and payments call nothing: a release of one has no dependents to test."""
    services = manifest["services"]
    assert isinstance(services, dict)
    for consumer in ("gateway", "orders"):
        services.pop(consumer)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with shop_repository(tmp_path_factory, "obs", OFFSETS) as shop:
        shop.edit_manifest(leaves_only)
        yield shop


@pytest.fixture(scope="module")
def traces() -> Iterator[Received]:
    with http_receiver() as received:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = received.url
        provider = configure_tracing()
        assert provider is not None, "tracing was not configured from OTEL_EXPORTER_OTLP_ENDPOINT"
        received.flush = provider.force_flush  # type: ignore[attr-defined]
        try:
            yield received
        finally:
            provider.shutdown()
            del os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]


@pytest.fixture(scope="module")
def notifications() -> Iterator[Received]:
    name = f"relay-notify-{uuid.uuid4().hex[:8]}"
    with http_receiver() as received:
        CustomWebhookNotificationBlock(
            name="relay",
            url=f"{received.url}/slack",
            json_data={"text": "*{{subject}}*\n{{body}}"},
        ).save(name)
        os.environ[NOTIFY_BLOCK_ENV] = f"custom-webhook/{name}"
        try:
            yield received
        finally:
            del os.environ[NOTIFY_BLOCK_ENV]


def texts(received: Received) -> list[str]:
    return [json.loads(body)["text"] for body in received.bodies()]


def descendants(spans: list[ReceivedSpan], root: ReceivedSpan) -> list[ReceivedSpan]:
    children: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        children.setdefault(span.parent_id, []).append(span)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop().span_id, []):
            found.append(child)
            todo.append(child)
    return found


def one(spans: list[ReceivedSpan], prefix: str) -> ReceivedSpan:
    matching = [s for s in spans if s.name.startswith(prefix)]
    assert len(matching) == 1, f"{prefix}: {[s.name for s in spans]}"
    return matching[0]


def test_a_release_is_one_trace_with_relay_attributes(
    shop: Shop, traces: Received, notifications: Received
) -> None:
    commit = shop.commit("Initial shop")
    [result] = asyncio.run(release(str(shop.repo), commit, services=["inventory"]))
    traces.flush()  # type: ignore[attr-defined]

    root = one([s for s in traces.spans if s.attributes.get("relay.app") == shop.app], "release-")
    assert root.parent_id == "" and root.resource["service.name"] == "relay"
    made = Ledger(relay_database()).release_of_commit(shop.app, commit)
    assert made is not None
    release_id = made.id  # the release itself, not a run: the same in every environment
    assert root.attributes["relay.commit"] == commit
    assert root.attributes["relay.release.id"] == release_id
    tree = descendants(traces.spans, root)
    assert {s.trace_id for s in tree} == {root.trace_id}

    build = one(tree, "build-inventory")
    built = descendants(traces.spans, build)
    for task in ("checkout-commit", "build-image", "push-image"):
        assert one(built, task).attributes["prefect.run.type"] == "task"
    push = one(descendants(traces.spans, one(built, "push-image")), "image push")
    assert push.attributes["relay.digest"] == result.image.rpartition("@")[2]

    pipeline = one(tree, "inventory-dev")
    assert pipeline.attributes["prefect.run.type"] == "flow"
    assert pipeline.attributes["relay.service"] == "inventory"
    assert pipeline.attributes["relay.environment"] == "dev"
    assert pipeline.attributes["relay.strategy"] == "rolling"
    assert pipeline.attributes["relay.commit"] == commit
    assert pipeline.attributes["relay.digest"] == result.image.rpartition("@")[2]
    assert pipeline.attributes["relay.release.id"] == release_id
    stages = descendants(traces.spans, pipeline)
    assert one(stages, "start-new-version").attributes["prefect.run.type"] == "task"
    strategy = one(stages, "rolling-inventory-dev")
    shift = one(descendants(traces.spans, strategy), "traffic shift")
    assert shift.attributes["relay.traffic.weight"] == 100
    assert shift.attributes["relay.service"] == "inventory"
    assert notifications.bodies() == [], "a successful first release notifies nobody"


def test_a_rollback_is_traced_and_notified(
    shop: Shop, traces: Received, notifications: Received
) -> None:
    shop.edit("services/inventory/app.py", '"""', '"""Inventory v2.\n')
    v2 = shop.commit("Inventory v2")
    asyncio.run(release(str(shop.repo), v2, services=["inventory"]))

    result = asyncio.run(rollback(str(shop.repo), "inventory", "dev"))
    traces.flush()  # type: ignore[attr-defined]
    root = one([s for s in traces.spans if s.parent_id == ""], "rollback-inventory-dev")
    assert root.attributes["relay.strategy"] == "rollback"
    assert root.attributes["relay.digest"] == result.image.rpartition("@")[2]
    assert any(s.name == "traffic shift" for s in descendants(traces.spans, root))

    notifications.wait_for(lambda r: len(r.requests) >= 1)
    [text] = texts(notifications)
    assert text.startswith(f"*Rollback: {shop.app} inventory in dev*")
    assert result.image in text and "/flow-runs/flow-run/" in text


def test_a_failed_run_is_notified_once_with_its_link(shop: Shop, notifications: Received) -> None:
    before = len(notifications.requests)
    with pytest.raises(TerminalError, match="already runs a rolled-back version"):
        asyncio.run(rollback(str(shop.repo), "inventory", "dev"))
    notifications.wait_for(lambda r: len(r.requests) > before)
    text = texts(notifications)[-1]
    assert text.startswith("*Failed: rollback-inventory-dev (rollback)*")
    assert "already runs a rolled-back version" in text and "/flow-runs/flow-run/" in text
    assert len(notifications.requests) == before + 1
