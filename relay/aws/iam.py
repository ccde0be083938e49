"""Least-privilege IAM policies: what a service's runtime and what the pipeline may do in AWS.

Two policies, printed by `relay iam-policy`:

* `runtime_policy`: a running service reads its configuration and nothing else, so its role
  gets `secretsmanager:GetSecretValue` on exactly the secrets it is configured with (the
  environment's and its own), by full ARN. `secret_arns` looks those ARNs up, since an ARN
  ends in a random suffix that only Secrets Manager knows.
* `pipeline_policy`: Relay's worker pushes and scans images in the app's ECR repositories,
  reads the environments' secrets, publishes metrics in one namespace, reads the manifest's
  alarms and writes logs to the app's log groups; each statement names those resources only.
  `ecr:GetAuthorizationToken` is the one action IAM only grants on "*".

Secrets encrypted with the AWS managed key need no KMS grant; with a customer managed key, let
the role use it in the key's own policy (`kms:Decrypt` with `kms:ViaService`).
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from relay.aws.errors import classify, code_of
from relay.errors import TerminalError
from relay.manifest import Environment, Manifest

__all__ = ["Policy", "pipeline_policy", "runtime_policy", "secret_arns", "secret_sources"]

Policy = dict[str, Any]
VERSION = "2012-10-17"
_ECR = re.compile(r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?")
# A secret's ARN is its name, '-' and six random characters: '??????' matches exactly those, so
# "orders-config" does not also match "orders-config-old".
_SECRET_SUFFIX = "-??????"

ECR_PUSH_AND_SCAN = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:CreateRepository",
    "ecr:DescribeImageScanFindings",
    "ecr:DescribeImages",
    "ecr:DescribeRepositories",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:ListImages",
    "ecr:PutImage",
    "ecr:PutImageScanningConfiguration",
    "ecr:PutImageTagMutability",
    "ecr:StartImageScan",
    "ecr:UploadLayerPart",
]
ECR_READ_SCANS = ["ecr:DescribeImageScanFindings", "ecr:StartImageScan"]


def secret_sources(manifest: Manifest, service: str, environment: str) -> dict[str, str]:
    """The secret ids `service` reads in `environment`, each with the manifest field naming it:
    the environment's secret, then the service's own (`services.<svc>.secrets.<env>`)."""
    sources: dict[str, str] = {}
    shared = manifest.environments[environment].secrets
    if shared is not None:
        sources[shared] = f"environments.{environment}.secrets"
    own = manifest.services[service].secrets.get(environment)
    if own is not None:
        sources.setdefault(own, f"services.{service}.secrets.{environment}")
    return sources


def secret_arns(client: Any, manifest: Manifest, service: str, environment: str) -> list[str]:
    """The full ARNs of the secrets `service` reads in `environment` (see `secret_sources`).

    Raises:
        TerminalError: A secret does not exist; every missing one is named with the field of
            relay.yaml that names it.
        TransientError: Secrets Manager could not be reached.
    """
    arns: list[str] = []
    missing: list[str] = []
    for secret_id, field in secret_sources(manifest, service, environment).items():
        try:
            arns.append(str(client.describe_secret(SecretId=secret_id)["ARN"]))
        except ClientError as exc:
            if code_of(exc) != "ResourceNotFoundException":
                raise classify(exc, f"looking up secret {secret_id!r}") from None
            missing.append(f"{manifest.source}: {field}: secret {secret_id!r}")
        except BotoCoreError as exc:
            raise classify(exc, f"looking up secret {secret_id!r}") from None
    if missing:
        raise TerminalError(
            f"not found in AWS Secrets Manager ({client.meta.region_name}): "
            f"{'; '.join(missing)}; create it (aws secretsmanager create-secret --name ... "
            '--secret-string \'{"KEY": "value"}\') or fix the name in relay.yaml'
        )
    return arns


def runtime_policy(secret_arns: list[str]) -> Policy:
    """Read exactly these secrets, nothing else.

    Raises:
        ValueError: No ARNs: a service without secrets needs no AWS permissions at all, and IAM
            refuses a policy without statements.
    """
    if not secret_arns:
        raise ValueError("no secrets: this service needs no AWS permissions; attach no policy")
    return _policy(
        _statement("ReadOwnConfiguration", ["secretsmanager:GetSecretValue"], sorted(secret_arns))
    )


def pipeline_policy(manifest: Manifest, account: str, region: str) -> Policy:
    """What Relay itself calls in AWS for `manifest`'s app, in `account` and `region`.

    Statements appear only for what the manifest uses: ECR when `registry` is an ECR address
    (its account and region are the address's), ECR scan findings when `image_scan.source` is
    ecr and the images are pushed elsewhere, secrets of environments that name one, the
    approver tokens' secret where approvals require tokens, metrics and logs when `cloudwatch`
    enables them, alarms the environments name.

    Raises:
        TerminalError: Relay makes no AWS call for this manifest (IAM refuses an empty policy).
    """
    partition = _partition(region)
    statements: list[dict[str, Any]] = []
    ecr = _ECR.fullmatch(manifest.registry)
    if ecr is not None:
        repository = (
            f"arn:{_partition(ecr['region'])}:ecr:{ecr['region']}:{ecr['account']}:repository"
        )
        statements += [
            _statement("EcrLogin", ["ecr:GetAuthorizationToken"], ["*"]),
            _statement(
                "EcrPushAndScan",
                ECR_PUSH_AND_SCAN,
                [f"{repository}/{manifest.app}/{service}" for service in manifest.services],
            ),
        ]
    elif manifest.image_scan.source == "ecr":
        statements.append(
            _statement(
                "ReadImageScans",
                ECR_READ_SCANS,
                [
                    f"arn:{partition}:ecr:{region}:{account}:repository/{manifest.app}/{service}"
                    for service in manifest.services
                ],
            )
        )
    secrets = sorted(
        {
            secret_id
            for service in manifest.services
            for environment in manifest.environments
            for secret_id in secret_sources(manifest, service, environment)
        }
    )
    if secrets:
        statements.append(
            _statement(
                "ReadEnvironmentSecrets",
                ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
                [
                    f"arn:{partition}:secretsmanager:{region}:{account}:secret:{s}{_SECRET_SUFFIX}"
                    for s in secrets
                ],
            )
        )
    tokens = sorted(
        {env.approval.tokens_secret for env in manifest.environments.values() if _tokens(env)}
    )
    if tokens:
        statements.append(
            _statement(
                "ReadApproverTokens",
                ["secretsmanager:GetSecretValue"],
                [
                    f"arn:{partition}:secretsmanager:{region}:{account}:secret:{s}{_SECRET_SUFFIX}"
                    for s in tokens
                ],
            )
        )
    if manifest.cloudwatch.metrics:
        statement = _statement("PublishDeliveryMetrics", ["cloudwatch:PutMetricData"], ["*"])
        # PutMetricData has no resource to scope; the namespace condition is its boundary.
        statement["Condition"] = {
            "StringEquals": {"cloudwatch:namespace": manifest.cloudwatch.namespace}
        }
        statements.append(statement)
    alarms = sorted(
        {
            name
            for env in manifest.environments.values()
            for name in [*env.analysis.cloudwatch_alarms, *env.approval.block_on_alarms]
        }
    )
    if alarms:
        statements.append(
            _statement(
                "ReadGatingAlarms",
                ["cloudwatch:DescribeAlarms"],
                [f"arn:{partition}:cloudwatch:{region}:{account}:alarm:{name}" for name in alarms],
            )
        )
    if any(env.analysis.metrics == "cloudwatch" for env in manifest.environments.values()):
        # GetMetricData has no resource to scope (AWS documents "*" only).
        statements.append(_statement("ReadCanaryMetrics", ["cloudwatch:GetMetricData"], ["*"]))
    if manifest.cloudwatch.logs:
        groups = [
            f"arn:{partition}:logs:{region}:{account}:log-group:"
            f"{manifest.cloudwatch.log_group_prefix}/{service}"
            for service in manifest.services
        ]
        statements.append(
            _statement(
                "ShipPipelineLogs",
                ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                [arn for group in groups for arn in (group, f"{group}:log-stream:*")],
            )
        )
    if manifest.cloudwatch.events:
        bus = manifest.cloudwatch.event_bus
        arn = (
            bus
            if bus.startswith("arn:")
            else f"arn:{partition}:events:{region}:{account}:event-bus/{bus}"
        )
        statements.append(_statement("PutDeploymentEvents", ["events:PutEvents"], [arn]))
    if manifest.cloudwatch.service_logs:
        # Relay makes each service's group and reads it (`relay logs`); the Docker engine's own
        # role writes the streams (CreateLogStream, PutLogEvents: see the README).
        groups = [
            f"arn:{partition}:logs:{region}:{account}:log-group:/{manifest.app}/{env}/{service}"
            for env, settings in manifest.environments.items()
            if settings.platform == "docker"
            for service in manifest.services
        ]
        statements.append(
            _statement(
                "ServiceLogGroups",
                ["logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:FilterLogEvents"],
                [arn for group in groups for arn in (group, f"{group}:log-stream:*")],
            )
        )
    if not statements:
        raise TerminalError(
            f"{manifest.source}: Relay makes no AWS call for this manifest, so its pipeline needs "
            "no AWS policy"
        )
    return _policy(*statements)


def _tokens(env: Environment) -> bool:
    """Decisions in the environment (its approvals, an inconclusive canary's pause) are checked
    against approver tokens (`relay.approval`)."""
    asks = env.approval.required or env.analysis.on_inconclusive == "pause"
    return asks and env.approval.require_token


def _policy(*statements: dict[str, Any]) -> Policy:
    return {"Version": VERSION, "Statement": list(statements)}


def _statement(sid: str, actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"
