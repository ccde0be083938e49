"""Environment configuration from AWS Secrets Manager on the real stack (moto over HTTP):
services read their environment's values at runtime, a rotation is deployed and recorded, a
missing key stops a release before anything changes, and planted values never reach the
Prefect server (logs, artifacts, run parameters, state messages), even when a crashing
service prints them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterStartTime,
    LogFilter,
    LogFilterFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)

from flows.release import release
from flows.service_pipeline import service_pipeline
from relay import redaction
from relay.errors import StageFailed, TerminalError
from relay.ledger import Ledger
from relay.settings import relay_database
from tests.flows.shop import Shop, config_secret, shop_repository

pytestmark = pytest.mark.stack

OFFSETS = {"dev": 22500, "staging": 23500, "prod": 24500}
GATEWAY_PORT = 8001


@pytest.fixture(scope="module")
def started() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="module")
def planted() -> dict[str, str]:
    """Values no test output may show; distinctive so that a search cannot miss them."""
    return {"GREETING": f"planted-greeting-{uuid.uuid4().hex}"}


@pytest.fixture(scope="module")
def shop(
    tmp_path_factory: pytest.TempPathFactory, planted: dict[str, str], started: datetime
) -> Iterator[Shop]:
    with shop_repository(tmp_path_factory, "config", OFFSETS) as shop:
        put_config(shop, "dev", planted)
        yield shop


def put_config(shop: Shop, environment: str, data: dict[str, str]) -> str:
    client = boto3.client("secretsmanager")
    answer = client.put_secret_value(
        SecretId=config_secret(shop.app, environment), SecretString=json.dumps(data)
    )
    return str(answer["VersionId"])


def fingerprints(environment: str) -> dict[str, str]:
    url = f"http://127.0.0.1:{GATEWAY_PORT + OFFSETS[environment]}/config"
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.load(response)["keys"])


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def gateway_in_dev(shop: Shop) -> Any:
    return Ledger(relay_database()).current(shop.app, "dev", "gateway")


@pytest.fixture(scope="module")
def v1(shop: Shop) -> str:
    sha = shop.commit("Initial shop")
    asyncio.run(release(str(shop.repo), sha))
    return sha


def test_a_service_reads_its_environment_values_at_runtime(
    shop: Shop, v1: str, planted: dict[str, str]
) -> None:
    assert fingerprints("dev") == {"GREETING": sha256(planted["GREETING"])}
    record = gateway_in_dev(shop)
    assert record is not None and record.config is not None
    assert record.config.startswith(f"{config_secret(shop.app, 'dev')}@")


def test_a_rotation_is_deployed_again_and_its_version_recorded(
    shop: Shop, v1: str, planted: dict[str, str]
) -> None:
    before = gateway_in_dev(shop)
    rotated = {"GREETING": f"rotated-{planted['GREETING']}"}
    version = put_config(shop, "dev", rotated)
    redaction.register(rotated.values())

    result = asyncio.run(service_pipeline(str(shop.repo), v1, "gateway", "dev"))

    after = gateway_in_dev(shop)
    assert result.changed, "same image, new configuration: the service is deployed again"
    assert after.image == before.image
    assert after.config == f"{config_secret(shop.app, 'dev')}@{version}" != before.config
    assert fingerprints("dev") == {"GREETING": sha256(rotated["GREETING"])}
    put_config(shop, "dev", planted)


def test_a_missing_key_stops_the_release_before_anything_is_deployed(shop: Shop, v1: str) -> None:
    before = gateway_in_dev(shop)
    shop.edit_manifest(
        lambda m: m["services"]["gateway"].update(secret_keys=["GREETING", "SIGNING_KEY"])
    )
    shop.edit("services/gateway/app.py", '"""', '"""Gateway, needing a signing key.\n')
    sha = shop.commit("gateway needs SIGNING_KEY")

    with pytest.raises(TerminalError) as error:
        asyncio.run(release(str(shop.repo), sha))

    assert "services.gateway.secret_keys: SIGNING_KEY not found" in str(error.value)
    assert "nothing was deployed" in str(error.value)
    assert gateway_in_dev(shop) == before
    assert Ledger(relay_database()).history(shop.app)[0].commit == v1


def test_planted_values_never_reach_the_prefect_server(
    shop: Shop, v1: str, planted: dict[str, str], started: datetime
) -> None:
    # A gateway that prints its configuration and exits: Relay quotes a crashed container's
    # last output in its error, so the values would reach logs and state messages unmasked.
    shop.edit_manifest(lambda m: m["services"]["gateway"].update(secret_keys=["GREETING"]))
    shop.edit(
        "services/gateway/app.py",
        "    sys.exit(main())",
        '    print("config:", os.environ.get("GREETING"), flush=True)\n    sys.exit(3)',
    )
    sha = shop.commit("gateway that prints its config and crashes")
    with pytest.raises(StageFailed) as error:
        asyncio.run(release(str(shop.repo), sha))
    # Booleans only: on failure pytest would print the compared texts, and with them the values.
    quoted_masked = redaction.MASK in str(error.value)
    assert quoted_masked, "the crash output is quoted in the error, masked"

    texts = everything_the_server_holds(started)
    masked_somewhere = any(redaction.MASK in text for text in texts)
    assert masked_somewhere, "the leak path was exercised"
    leaks = sum(value in text for value in planted.values() for text in texts)
    assert leaks == 0, f"a planted value reached the Prefect server in {leaks} places"


def everything_the_server_holds(since: datetime) -> list[str]:
    """Log messages, artifacts, run names, parameters and state messages of every flow run
    started since `since`, and of their task runs."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)),
            limit=200,
        )
        ids = [run.id for run in runs]
        texts = [
            f"{run.name} {json.dumps(run.parameters, default=str)} "
            f"{run.state and run.state.message}"
            for run in runs
        ]
        for offset in range(0, 10_000, 200):
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)),
                limit=200,
                offset=offset,
            )
            texts += [log.message for log in logs]
            if len(logs) < 200:
                break
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)),
            limit=200,
        )
        texts += [f"{a.key} {a.description} {json.dumps(a.data, default=str)}" for a in artifacts]
        tasks = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=ids)),
            limit=200,
        )
        texts += [f"{t.name} {t.state and t.state.message}" for t in tasks]
    assert len(runs) > 3 and len(texts) > 50, "the search found the runs of this module"
    return texts
