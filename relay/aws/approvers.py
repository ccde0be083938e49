"""Approver tokens from AWS Secrets Manager: the out-of-band half of `approval.require_token`.

The secret (default `relay/approvers`) is a JSON object of approver name → `sha256:<hex>` of
that approver's token (see `relay.approval.token_digest`). It lives in Secrets Manager rather
than in a Prefect Secret block on purpose: the Prefect server's API (open-source, without
authentication) returns its blocks' secret values to any caller, the same caller who could fill
in the form; Secrets Manager has IAM. Digests, not tokens, so a reader of the secret (an
auditor, a backup) still cannot approve.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from relay.approval import TOKEN_DIGEST
from relay.aws.errors import DENIED, classify, code_of
from relay.errors import TerminalError

__all__ = ["read_token_digests"]

_NOT_FOUND = {"ResourceNotFoundException"}
SHAPE = '{"alice": "sha256:<64 hex digits>"} (`relay approver-token alice` prints one)'


def read_token_digests(client: Any, secret_id: str) -> dict[str, str]:
    """Approver name → token digest, from the secret `secret_id`.

    Raises:
        TerminalError: the secret is missing, unreadable or not of the shape above (every bad
            entry named by approver, never by value).
        TransientError: Secrets Manager could not be reached.
    """
    try:
        answer = client.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = code_of(exc)
        if code in _NOT_FOUND:
            raise TerminalError(
                f"approval tokens secret {secret_id!r} not found in AWS Secrets Manager "
                f"({client.meta.region_name}); create it with {SHAPE}, or set "
                "approval.tokens_secret in relay.yaml"
            ) from None
        if code in DENIED:
            raise TerminalError(
                f"not allowed to read approval tokens secret {secret_id!r} ({code}); grant "
                "secretsmanager:GetSecretValue on it to the pipeline's role"
            ) from None
        raise classify(exc, f"reading secret {secret_id!r}") from None
    except BotoCoreError as exc:
        raise classify(exc, f"reading secret {secret_id!r}") from None
    try:
        data = json.loads(answer.get("SecretString") or "")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise TerminalError(f"secret {secret_id!r} is not a JSON object; store {SHAPE}")
    bad = [
        str(name)
        for name, digest in data.items()
        if not (isinstance(digest, str) and TOKEN_DIGEST.fullmatch(digest))
    ]
    if bad:
        raise TerminalError(
            f"secret {secret_id!r}: the entries of {', '.join(map(repr, bad))} are not token "
            f"digests; store {SHAPE} (digests, never the tokens themselves)"
        )
    return {str(name): str(digest) for name, digest in data.items()}
