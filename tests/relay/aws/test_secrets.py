"""Environment configuration from Secrets Manager, against the stack's moto server over HTTP
(real boto3, `AWS_ENDPOINT_URL`): what a deployment pins, what it injects, and how a missing
secret or key is reported without showing any value."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from relay import redaction
from relay.aws.secrets import read_values, resolve, secret_ids
from relay.errors import TerminalError
from relay.manifest import Manifest, parse_manifest

pytestmark = pytest.mark.stack


@pytest.fixture
def client() -> Any:
    return boto3.client("secretsmanager")


@pytest.fixture
def names(client: Any) -> Iterator[dict[str, str]]:
    """Unique secret names per test, deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    made = {"dev": f"{prefix}-dev-config", "own": f"{prefix}-payments-dev"}
    yield made
    for name in made.values():
        with contextlib.suppress(client.exceptions.ResourceNotFoundException):
            client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)


def manifest(dev_secret: str | None, **payments: Any) -> Manifest:
    return parse_manifest(
        {
            "app": "shop",
            "services": {
                "orders": {"path": "services/orders", "port": 8002},
                "payments": {"path": "services/payments", "port": 8004, **payments},
            },
            "environments": {"dev": {"port_offset": 10000, "secrets": dev_secret}},
        },
        "relay.yaml",
    )


def put(client: Any, name: str, data: dict[str, Any]) -> str:
    try:
        return str(client.create_secret(Name=name, SecretString=json.dumps(data))["VersionId"])
    except client.exceptions.ResourceExistsException:
        return str(
            client.put_secret_value(SecretId=name, SecretString=json.dumps(data))["VersionId"]
        )


def test_a_deployment_pins_versions_and_key_names_but_no_values(client: Any, names: dict) -> None:
    version = put(client, names["dev"], {"DATABASE_URL": "postgres://db-3f9a", "RETRIES": 3})

    config = resolve(client, manifest(names["dev"]), "dev", "orders")

    assert config.label == f"{names['dev']}@{version}"
    assert config.keys == ("DATABASE_URL", "RETRIES")
    assert "postgres" not in repr(config)
    assert read_values(client, config) == {"DATABASE_URL": "postgres://db-3f9a", "RETRIES": "3"}


def test_values_read_are_masked_from_then_on(client: Any, names: dict) -> None:
    value = f"pw-{uuid.uuid4().hex}"
    put(client, names["dev"], {"DB_PASSWORD": value})

    read_values(client, resolve(client, manifest(names["dev"]), "dev", "orders"))

    assert redaction.redact(f"connecting with {value}!") == f"connecting with {redaction.MASK}!"


def test_a_service_secret_is_laid_over_the_environment_one_and_keys_are_chosen(
    client: Any, names: dict
) -> None:
    put(client, names["dev"], {"GREETING": "hi", "API_KEY": "shared-key", "OTHER": "x"})
    put(client, names["own"], {"API_KEY": "payments-own-key"})
    doc = manifest(names["dev"], secrets={"dev": names["own"]}, secret_keys=["API_KEY", "GREETING"])

    config = resolve(client, doc, "dev", "payments")

    assert secret_ids(doc, "dev", "payments") == [names["dev"], names["own"]]
    assert read_values(client, config) == {"API_KEY": "payments-own-key", "GREETING": "hi"}


def test_a_rotation_is_a_new_version_and_old_versions_stay_readable(
    client: Any, names: dict
) -> None:
    put(client, names["dev"], {"TOKEN": "first-token"})
    doc = manifest(names["dev"])
    before = resolve(client, doc, "dev", "orders")

    put(client, names["dev"], {"TOKEN": "second-token"})
    after = resolve(client, doc, "dev", "orders")

    assert before.label != after.label
    assert read_values(client, before) == {"TOKEN": "first-token"}
    assert read_values(client, after) == {"TOKEN": "second-token"}


def test_a_missing_secret_names_it_and_says_how_to_create_it(client: Any, names: dict) -> None:
    with pytest.raises(TerminalError) as error:
        resolve(client, manifest(names["dev"]), "dev", "orders")

    message = str(error.value)
    assert f"secret {names['dev']!r} not found" in message
    assert "create-secret" in message and "environments.dev.secrets" in message


def test_a_missing_key_names_the_key_and_the_field_but_no_value(client: Any, names: dict) -> None:
    put(client, names["dev"], {"GREETING": "a-greeting-value"})

    with pytest.raises(TerminalError) as error:
        resolve(client, manifest(names["dev"], secret_keys=["API_KEY"]), "dev", "payments")

    message = str(error.value)
    assert "services.payments.secret_keys: API_KEY not found" in message
    assert "a-greeting-value" not in message


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("not json {", "is not JSON"),
        ('["a", "b"]', "not an object"),
        ('{"bad-key": "v"}', "'bad-key'"),
    ],
)
def test_a_secret_that_cannot_become_variables_is_refused(
    client: Any, names: dict, stored: str, expected: str
) -> None:
    client.create_secret(Name=names["dev"], SecretString=stored)

    with pytest.raises(TerminalError, match=expected):
        resolve(client, manifest(names["dev"]), "dev", "orders")


def test_no_configuration_secret_is_allowed_explicitly(client: Any) -> None:
    config = resolve(client, manifest(None), "dev", "orders")

    assert config.versions == () and config.label == ""
    assert read_values(client, config) == {}
