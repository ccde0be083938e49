"""Reaching an EKS cluster's API without the aws CLI: what `aws eks update-kubeconfig` and
`aws eks get-token` do, with boto3.

- The endpoint and the certificate authority come from `eks:DescribeCluster`.
- The bearer token is a presigned STS `GetCallerIdentity` URL that carries the cluster's name
  in the signed header `x-k8s-aws-id`. The cluster's authenticator calls that URL and maps the
  identity it answers with (the worker's role) through an access entry or `aws-auth`.
  The URL is valid for 15 minutes after signing, whatever `X-Amz-Expires` says (STS's rule),
  so tokens are made again before that (`EksTokens`).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relay.aws.errors import call
from relay.errors import TerminalError

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_HEADER = "x-k8s-aws-id"
# STS honours a presigned GetCallerIdentity for 15 minutes; the CLI signs with 60 s and renews
# at 14 min. Relay renews after 10, so a request never carries a token about to lapse.
TOKEN_LIFETIME_SECONDS = 15 * 60
RENEW_AFTER_SECONDS = 10 * 60
GRANT = "eks:DescribeCluster on the cluster"


@dataclass(frozen=True)
class EksEndpoint:
    """Where the cluster's API answers, and the authority its certificate is signed by."""

    name: str
    endpoint: str
    ca_pem: bytes


def describe_cluster(eks: Any, name: str) -> EksEndpoint:
    """The cluster's endpoint and CA (`eks:DescribeCluster`).

    Raises:
        TerminalError: no such cluster (in this account and region), one not yet ACTIVE, or
            access denied (what to grant).
        TransientError: AWS throttled or failed.
    """
    cluster = call(eks.describe_cluster, f"describe EKS cluster {name}", GRANT, name=name)[
        "cluster"
    ]
    status = cluster.get("status", "ACTIVE")
    if status != "ACTIVE":
        raise TerminalError(f"EKS cluster {name} is {status}, not ACTIVE; wait, then run again")
    endpoint = cluster.get("endpoint") or ""
    authority = (cluster.get("certificateAuthority") or {}).get("data") or ""
    if not endpoint or not authority:
        raise TerminalError(f"EKS cluster {name} reports no endpoint or certificate authority")
    return EksEndpoint(name, endpoint, base64.b64decode(authority))


def bearer_token(sts: Any, cluster: str) -> str:
    """A token for `cluster`, as `aws eks get-token` makes it: `k8s-aws-v1.` and the presigned
    GetCallerIdentity URL, base64url without padding."""
    events = sts.meta.events

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers[CLUSTER_HEADER] = cluster

    # Signed as a header of the URL (X-Amz-SignedHeaders), so the token names its cluster and
    # cannot be replayed against another one.
    events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    try:
        url = sts.generate_presigned_url(
            "get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET"
        )
    finally:
        events.unregister("before-sign.sts.GetCallerIdentity", add_cluster_header)
    encoded = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    return TOKEN_PREFIX + encoded


def token_url(token: str) -> str:
    """The presigned URL inside a token (what the cluster's authenticator calls)."""
    if not token.startswith(TOKEN_PREFIX):
        raise ValueError(f"not an EKS token: it does not start with {TOKEN_PREFIX}")
    body = token.removeprefix(TOKEN_PREFIX)
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


class EksTokens:
    """Tokens for one cluster, made again once `renew_after` seconds old: a long release keeps
    its API client while every request carries a valid token."""

    def __init__(
        self,
        sts: Any,
        cluster: str,
        renew_after: float = RENEW_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sts = sts
        self.cluster = cluster
        self.renew_after = renew_after
        self.clock = clock
        self._token = ""
        self._made = 0.0

    def current(self) -> str:
        if not self._token or self.clock() - self._made >= self.renew_after:
            self._token = bearer_token(self.sts, self.cluster)
            self._made = self.clock()
        return self._token
