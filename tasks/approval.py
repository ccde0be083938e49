"""Approval stage: the approvers' token digests, read from AWS Secrets Manager when an
environment requires tokens (`relay.aws.approvers` does the work)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.aws import aws_client
from relay.aws.approvers import read_token_digests
from tasks.support.retry import on_transient


@task(
    name="read-approver-tokens",
    cache_policy=NO_CACHE,
    **on_transient(2, 2),
)
def read_approver_tokens(secret_id: str) -> dict[str, str]:
    """Approver name → sha256 digest of their token. Read at every answer, not once, so a
    token revoked while a form waits no longer approves."""
    return read_token_digests(aws_client("secretsmanager"), secret_id)
