"""AWS clients from a prefect-aws `AwsCredentials` block.

`RELAY_AWS_CREDENTIALS_BLOCK` names a saved block (region, keys or a profile, endpoint); without
it the block is built from the standard AWS environment (`AWS_PROFILE`, `AWS_REGION`,
`AWS_ENDPOINT_URL`, instance or pod roles), exactly as boto3 would. The local stack sets
`AWS_ENDPOINT_URL` to its moto server, so tests take the same code path as production.
"""

from __future__ import annotations

import os
from typing import Any

from prefect_aws import AwsClientParameters, AwsCredentials

CREDENTIALS_BLOCK_VARIABLE = "RELAY_AWS_CREDENTIALS_BLOCK"
# botocore's defaults wait 60 s per read and retry up to 5 times in "legacy" mode: an
# unreachable endpoint would hold a deployment for minutes where a clear error is better.
CLIENT_CONFIG = {
    "connect_timeout": 5,
    "read_timeout": 30,
    "retries": {"max_attempts": 3, "mode": "standard"},
}


def aws_credentials() -> AwsCredentials:
    """The saved block when one is named (its own client settings win), else the environment
    with Relay's timeouts."""
    name = os.environ.get(CREDENTIALS_BLOCK_VARIABLE)
    if name:
        return AwsCredentials.load(name, _sync=True)  # also from async flows and hooks
    return AwsCredentials(aws_client_parameters=AwsClientParameters(config=CLIENT_CONFIG))


def aws_client(service: str) -> Any:
    """A boto3 client for `service` ("secretsmanager", "ecr", "cloudwatch", "logs", ...)."""
    return aws_credentials().get_client(service)
