"""Approval tokens: the pure check (relay.approval) and the digests secret read from the stack's
moto server (relay.aws.approvers)."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from relay.approval import new_token, token_digest, token_problem
from relay.aws.approvers import read_token_digests
from relay.errors import TerminalError

TOKEN = "correct-horse-battery-staple"
DIGESTS = {"alice": token_digest(TOKEN)}


def test_the_right_token_approves() -> None:
    assert token_problem("alice", TOKEN, DIGESTS, "relay/approvers") is None
    assert token_problem(" alice ", TOKEN, DIGESTS, "relay/approvers") is None


@pytest.mark.parametrize(
    ("approver", "token", "reason"),
    [
        ("alice", "", "requires the approver's token"),
        ("alice", "wrong-token", "the token given is not 'alice''s"),
        ("bob", TOKEN, "'bob' has no approval token in 'relay/approvers'"),
    ],
)
def test_a_name_alone_or_a_wrong_token_does_not(approver: str, token: str, reason: str) -> None:
    problem = token_problem(approver, token, DIGESTS, "relay/approvers")
    assert problem is not None and reason in problem
    assert TOKEN not in problem and (not token or token not in problem)


def test_new_tokens_are_long_random_and_digested() -> None:
    first, second = new_token(), new_token()
    assert first != second and len(first) >= 40
    assert token_digest(first).startswith("sha256:") and len(token_digest(first)) == 71


@pytest.mark.stack
def test_digests_come_from_secrets_manager() -> None:
    client = boto3.client("secretsmanager")
    secret_id = f"relay-test/approvers-{uuid.uuid4().hex[:8]}"
    with pytest.raises(TerminalError, match="not found in AWS Secrets Manager"):
        read_token_digests(client, secret_id)
    client.create_secret(Name=secret_id, SecretString=json.dumps(DIGESTS))
    assert read_token_digests(client, secret_id) == DIGESTS
    client.put_secret_value(SecretId=secret_id, SecretString=json.dumps({"bob": TOKEN}))
    with pytest.raises(TerminalError, match="'bob' are not token digests") as bad:
        read_token_digests(client, secret_id)
    assert TOKEN not in str(bad.value)
    client.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
