"""Approval policy: who may approve a deployment to an environment (pure, no I/O).

Open-source Prefect does not authenticate who fills in a pause form, so the name is what the
person typed; the policy still stops the honest mistakes (approving your own change, or an
environment you are not listed for), and the ledger keeps who said so.
"""

from __future__ import annotations

from relay.manifest import Approval


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
