"""Approval policy: who may approve a deployment to an environment (pure, no I/O).

Open-source Prefect does not authenticate who fills in a pause form, so the name is what the
person typed; the policy still stops the honest mistakes (approving your own change, or an
environment you are not listed for), and the ledger keeps who said so.

With `approval.require_token`, a name is not enough: the answer must carry that approver's
token, a random string given to them out of band, whose sha256 (`token_digest`) is kept in an
AWS Secrets Manager secret (`approval.tokens_secret`, read by `relay.aws.approvers`). Only
digests are stored, so whoever can read the secret still cannot approve; the comparison is in
constant time. `new_token` makes one (`relay approver-token NAME`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping

from relay.manifest import Approval

__all__ = ["TOKEN_DIGEST", "approval_problem", "new_token", "token_digest", "token_problem"]

TOKEN_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
TOKEN_BYTES = 32  # 256 random bits: guessing is not an attack worth a lockout


def approval_problem(approver: str, policy: Approval, authors: list[str]) -> str | None:
    """Why `approver` may not approve under `policy`, or None when they may."""
    name = approver.strip()
    if not name:
        return "the approver's name is empty; write your name"
    if policy.approvers and name not in policy.approvers:
        return f"{name!r} is not an approver here; approvers: {', '.join(policy.approvers)}"
    if not policy.allow_self_approval and name.lower() in {a.lower() for a in authors if a}:
        return f"{name!r} wrote this change and may not approve it (allow_self_approval is off)"
    return None


def token_digest(token: str) -> str:
    """What the tokens secret holds for `token`: `sha256:<64 hex digits>`."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh approver token (URL-safe text)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_problem(
    approver: str, token: str, digests: Mapping[str, str], secret_id: str
) -> str | None:
    """Why `token` does not let `approver` approve, or None when it does.

    `digests` maps approver names to `token_digest`s (the tokens secret). The reasons never
    quote the token: they end up in the form and the logs.
    """
    name = approver.strip()
    if not token:
        return (
            "this environment requires the approver's token (approval.require_token); "
            "give it in the form's token field, or with `relay approve --token` / "
            "RELAY_APPROVAL_TOKEN"
        )
    expected = digests.get(name)
    if expected is None:
        return (
            f"{name!r} has no approval token in {secret_id!r}; an administrator adds one "
            f"(`relay approver-token {name}` prints a token and the line to store)"
        )
    if not hmac.compare_digest(token_digest(token), expected):
        return f"the token given is not {name!r}'s"
    return None
