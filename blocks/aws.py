"""AWS clients from a prefect-aws `AwsCredentials` block.

`RELAY_AWS_CREDENTIALS_BLOCK` names a saved block (region, keys or a profile, endpoint); without
it the block is built from the standard AWS environment (`AWS_PROFILE`, `AWS_REGION`,
`AWS_ENDPOINT_URL`, instance or pod roles), exactly as boto3 would. The local stack sets
`AWS_ENDPOINT_URL` to its moto server, so tests take the same code path as production.
"""

from __future__ import annotations

import os
from typing import Any

from prefect_aws import AwsCredentials

CREDENTIALS_BLOCK_VARIABLE = "RELAY_AWS_CREDENTIALS_BLOCK"


def aws_credentials() -> AwsCredentials:
    name = os.environ.get(CREDENTIALS_BLOCK_VARIABLE)
    return AwsCredentials.load(name) if name else AwsCredentials()


def aws_client(service: str) -> Any:
    """A boto3 client for `service` ("secretsmanager", "ecr", "cloudwatch", "logs", ...)."""
    return aws_credentials().get_client(service)
