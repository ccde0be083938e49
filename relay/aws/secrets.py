"""Environment configuration from AWS Secrets Manager, without ever handing the values around.

Each environment names a secret (`dev-config`), a JSON object whose keys become the services'
environment variables; a service may lay a secret of its own over it, and may name the keys it
needs (`secret_keys`). Deploying happens in two steps on purpose:

1. `resolve` reads the secrets' current versions and checks everything a deployment needs
   (the secrets exist, are JSON objects, have the required keys, and the keys can be variable
   names). It returns a `ServiceConfig`: secret ids, version ids and key names - no values -
   which is safe to pass as a flow parameter, show in the UI and record in the ledger. A
   missing secret or key fails here, before anything is deployed.
2. `read_values` reads exactly those versions again at the moment a container starts, registers
   the values for masking (`relay.redaction`) and returns them for the container's environment.

So a rotation (a new AWSCURRENT version) shows as a new version id in the ledger, and the next
deployment picks it up even when the image did not change.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from relay import redaction
from relay.aws.errors import DENIED, classify, code_of
from relay.errors import TerminalError
from relay.manifest import Manifest

__all__ = ["SecretVersion", "ServiceConfig", "read_values", "resolve", "secret_ids"]

_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOT_FOUND = {"ResourceNotFoundException"}
_UNREADABLE = {"DecryptionFailure", "InvalidRequestException", "InvalidParameterException"}


@dataclass(frozen=True)
class SecretVersion:
    secret_id: str
    version_id: str

    def __str__(self) -> str:
        return f"{self.secret_id}@{self.version_id}"


@dataclass(frozen=True)
class ServiceConfig:
    """What one deployment injects: secret versions, in the order they are laid over each
    other, and the key names taken from them. Never values."""

    versions: tuple[SecretVersion, ...]
    keys: tuple[str, ...]

    @property
    def label(self) -> str:
        """`dev-config@<version id>[,...]`: for the ledger and the container's labels."""
        return ",".join(str(version) for version in self.versions)


def secret_ids(manifest: Manifest, environment: str, service: str) -> list[str]:
    """The secrets a service reads in an environment: the environment's, then its own."""
    ids = []
    if (shared := manifest.environments[environment].secrets) is not None:
        ids.append(shared)
    if (own := manifest.services[service].secrets.get(environment)) is not None:
        ids.append(own)
    return ids


def resolve(client: Any, manifest: Manifest, environment: str, service: str) -> ServiceConfig:
    """Check a service's configuration in an environment and pin its current versions.

    Raises:
        TerminalError: a secret is missing, unreadable or not a JSON object, or lacks a key
            the service declares; the message names the secret, the key and the fix, never a
            value.
        TransientError: AWS could not be reached or throttled the call.
    """
    where = f"{manifest.source}: services.{service}"
    versions: list[SecretVersion] = []
    keys: dict[str, None] = {}  # ordered set
    for secret_id in secret_ids(manifest, environment, service):
        version_id, data = _read(client, secret_id, None, manifest, environment)
        versions.append(SecretVersion(secret_id, version_id))
        keys.update(dict.fromkeys(data))
    wanted = manifest.services[service].secret_keys
    missing = [key for key in wanted if key not in keys]
    if missing:
        sources = ", ".join(v.secret_id for v in versions) or "no secret (secrets: null)"
        raise TerminalError(
            f"{where}.secret_keys: {', '.join(missing)} not found in {sources} "
            f"({environment}); add the key to the secret, or remove it from secret_keys"
        )
    chosen = tuple(wanted) if wanted else tuple(keys)
    return ServiceConfig(tuple(versions), chosen)


def read_values(client: Any, config: ServiceConfig) -> dict[str, str]:
    """The values of `config`'s keys at exactly its versions, registered for masking.

    Later secrets override earlier ones (a service's own over its environment's)."""
    merged: dict[str, str] = {}
    for version in config.versions:
        _, data = _read(client, version.secret_id, version.version_id, None, None)
        merged.update(data)
    values = {key: merged[key] for key in config.keys if key in merged}
    redaction.register(values.values())
    return values


def _read(
    client: Any,
    secret_id: str,
    version_id: str | None,
    manifest: Manifest | None,
    environment: str | None,
) -> tuple[str, dict[str, str]]:
    """(version id, JSON object as strings) of one secret version; values registered."""
    hint = _hint(manifest, environment, secret_id)
    request = {"SecretId": secret_id} | ({"VersionId": version_id} if version_id else {})
    try:
        answer = client.get_secret_value(**request)
    except ClientError as exc:
        code = code_of(exc)
        if code in _NOT_FOUND:
            what = f"version {version_id} of " if version_id else ""
            raise TerminalError(
                f"{what}secret {secret_id!r} not found in AWS Secrets Manager "
                f"({client.meta.region_name}); {hint}"
            ) from None
        if code in DENIED:
            raise TerminalError(
                f"not allowed to read secret {secret_id!r} ({code}); grant "
                "secretsmanager:GetSecretValue on it (see `relay iam-policy --pipeline`)"
            ) from None
        if code in _UNREADABLE:
            raise TerminalError(f"secret {secret_id!r} cannot be read ({code}); {hint}") from None
        raise classify(exc, f"reading secret {secret_id!r}") from None
    except BotoCoreError as exc:
        raise classify(exc, f"reading secret {secret_id!r}") from None
    text = answer.get("SecretString")
    if text is not None:
        redaction.register([text])
    data = _as_variables(secret_id, text, hint)
    redaction.register(data.values())
    return str(answer["VersionId"]), data


def _as_variables(secret_id: str, text: str | None, hint: str) -> dict[str, str]:
    """The secret's JSON object with every value as text; problems named without values."""
    shape = 'a JSON object such as {"DATABASE_URL": "..."}'
    if text is None:
        raise TerminalError(f"secret {secret_id!r} is binary; store {shape} as its string")
    try:
        data = json.loads(text)
    except ValueError:
        raise TerminalError(f"secret {secret_id!r} is not JSON; store {shape}") from None
    if not isinstance(data, dict):
        raise TerminalError(f"secret {secret_id!r} is JSON but not an object; store {shape}")
    bad = [key for key in data if not _VARIABLE.fullmatch(key)]
    if bad:
        raise TerminalError(
            f"secret {secret_id!r}: key(s) {', '.join(map(repr, bad))} cannot be environment "
            "variable names; rename them with letters, digits and '_'"
        )
    return {key: _text(value) for key, value in data.items()}


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _hint(manifest: Manifest | None, environment: str | None, secret_id: str) -> str:
    if manifest is None or environment is None:
        return "deploy again to use the current version"
    return (
        f"create it with a JSON object of the services' variables (aws secretsmanager "
        f'create-secret --name {secret_id} --secret-string \'{{"KEY": "value"}}\'), or set '
        f"environments.{environment}.secrets in {manifest.source} (null for none)"
    )
