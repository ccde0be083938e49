"""relay.aws.eks and blocks.kubernetes.eks_client against the stack's moto server: EKS's
DescribeCluster and STS's GetCallerIdentity, as far as moto serves them. moto's cluster
endpoint is a made-up public name, so no request is sent to it: what a real cluster's
authenticator does with the token (call STS with it) is done here against moto's STS.
"""

from __future__ import annotations

import base64
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from blocks.kubernetes import cluster_client
from relay.aws.eks import (
    CLUSTER_HEADER,
    EksTokens,
    bearer_token,
    describe_cluster,
    token_url,
)
from relay.errors import TerminalError
from relay.platforms.kubernetes import ClusterAccess

pytestmark = pytest.mark.stack


def _call_sts(url: str, cluster: str) -> httpx.Response:
    """GET the presigned URL as the cluster's authenticator does. moto tells its services apart
    only by an Authorization header's scope, so the same signature is also sent in that form
    (a workaround for moto: real STS reads it from the URL, and moto checks no signature)."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={query['X-Amz-Credential']}, "
        f"SignedHeaders={query['X-Amz-SignedHeaders']}, Signature={query['X-Amz-Signature']}"
    )
    headers = {CLUSTER_HEADER: cluster, "Authorization": authorization}
    return httpx.get(url, headers=headers, timeout=10)


@pytest.fixture
def cluster() -> Iterator[str]:
    eks = boto3.client("eks")
    name = f"relay-{uuid.uuid4().hex[:8]}"
    eks.create_cluster(
        name=name,
        roleArn="arn:aws:iam::123456789012:role/eks-cluster",
        resourcesVpcConfig={"subnetIds": []},
    )
    yield name
    eks.delete_cluster(name=name)


def test_the_endpoint_and_authority_come_from_describe_cluster(cluster: str) -> None:
    described = boto3.client("eks").describe_cluster(name=cluster)["cluster"]

    found = describe_cluster(boto3.client("eks"), cluster)

    assert found.endpoint == described["endpoint"]
    assert found.ca_pem == base64.b64decode(described["certificateAuthority"]["data"])


def test_an_unknown_cluster_is_a_clear_error() -> None:
    with pytest.raises(TerminalError, match="describe EKS cluster no-such-cluster"):
        describe_cluster(boto3.client("eks"), "no-such-cluster")


def test_the_token_is_a_presigned_get_caller_identity_that_names_the_cluster(
    cluster: str,
) -> None:
    token = bearer_token(boto3.client("sts"), cluster)

    assert token.startswith("k8s-aws-v1.") and "=" not in token
    url = token_url(token)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["Action"] == ["GetCallerIdentity"]
    assert query["X-Amz-Expires"] == ["60"]
    assert CLUSTER_HEADER in query["X-Amz-SignedHeaders"][0].split(";")
    # What the cluster's authenticator does with it: call STS, with the cluster's name.
    answer = _call_sts(url, cluster)
    assert answer.status_code == 200, answer.text
    assert "<Arn>" in answer.text and "GetCallerIdentityResult" in answer.text


def test_tokens_are_made_again_before_they_lapse(cluster: str) -> None:
    sts = boto3.client("sts")
    signed: list[str] = []
    sts.meta.events.register(
        "before-sign.sts.GetCallerIdentity", lambda request, **_: signed.append(request.url)
    )
    now = [0.0]
    tokens = EksTokens(sts, cluster, renew_after=600, clock=lambda: now[0])

    first = tokens.current()
    now[0] = 599.0
    assert tokens.current() == first and len(signed) == 1, "reused while it is fresh"
    now[0] = 600.0
    tokens.current()
    assert len(signed) == 2, "a token 10 minutes old is signed again"


def test_an_eks_cluster_in_relay_yaml_gives_a_client_with_its_endpoint_and_a_bearer_token(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_HOME", str(tmp_path))
    described = describe_cluster(boto3.client("eks"), cluster)

    client = cluster_client(ClusterAccess(eks_cluster=cluster))
    try:
        settings = client.configuration
        assert settings.host == described.endpoint
        assert Path(settings.ssl_ca_cert).read_bytes() == described.ca_pem
        header = settings.get_api_key_with_prefix("authorization")
        assert header.startswith("Bearer k8s-aws-v1.")
        answer = _call_sts(token_url(header.removeprefix("Bearer ")), cluster)
        assert answer.status_code == 200 and "GetCallerIdentityResult" in answer.text
    finally:
        client.close()
