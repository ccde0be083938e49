"""relay.aws.iam and `relay iam-policy`: policies IAM accepts (moto over HTTP), scoped to exactly
what a service's runtime and the pipeline use."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from deployments.cli import main
from relay.aws.iam import pipeline_policy, runtime_policy, secret_arns
from relay.errors import TerminalError
from relay.manifest import CloudWatchMetrics, Manifest, load_manifest

ACCOUNT = "123456789012"
REGION = "us-east-1"
ECR = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"


def manifest_file(tmp_path: Path, text: str) -> Path:
    for service in ("orders", "payments"):
        (tmp_path / "services" / service).mkdir(parents=True, exist_ok=True)
        (tmp_path / "services" / service / "Dockerfile").write_text("FROM scratch\n")
    path = tmp_path / "relay.yaml"
    path.write_text(text)
    return path


def shop(tmp_path: Path, prefix: str, registry: str = "127.0.0.1:5000") -> Manifest:
    return load_manifest(
        manifest_file(
            tmp_path,
            f"""
app: shop
registry: {registry}
services:
  orders: {{path: services/orders, port: 8002}}
  payments:
    path: services/payments
    port: 8004
    secrets: {{prod: {prefix}-payments-prod}}
environments:
  dev: {{port_offset: 10000, secrets: {prefix}-dev}}
  prod:
    port_offset: 14000
    secrets: {prefix}-prod
    strategy: canary
    analysis: {{cloudwatch_alarms: [shop-prod-5xx]}}
    approval: {{required: true, block_on_alarms: [shop-prod-5xx, shop-prod-latency]}}
cloudwatch: {{namespace: Delivery}}
""",
        )
    )


def statements(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in policy["Statement"]}


def test_the_pipeline_policy_names_its_resources(tmp_path: Path) -> None:
    policy = pipeline_policy(shop(tmp_path, "p", ECR), ACCOUNT, REGION)
    assert policy["Version"] == "2012-10-17"
    by_sid = statements(policy)
    assert list(by_sid) == [
        "EcrLogin",
        "EcrPushAndScan",
        "ReadEnvironmentSecrets",
        "PublishDeliveryMetrics",
        "ReadGatingAlarms",
        "ShipPipelineLogs",
        "PutDeploymentEvents",
    ]
    assert by_sid["PutDeploymentEvents"]["Resource"] == [
        f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"
    ]
    assert by_sid["EcrLogin"]["Resource"] == ["*"]
    assert by_sid["EcrPushAndScan"]["Resource"] == [
        f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/shop/orders",
        f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/shop/payments",
    ]
    assert "ecr:PutImage" in by_sid["EcrPushAndScan"]["Action"]
    assert "ecr:DescribeImageScanFindings" in by_sid["EcrPushAndScan"]["Action"]
    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"
    assert by_sid["ReadEnvironmentSecrets"]["Resource"] == [
        f"{secret}p-dev-??????",
        f"{secret}p-payments-prod-??????",
        f"{secret}p-prod-??????",
    ]
    assert by_sid["PublishDeliveryMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "Delivery"}
    }
    assert by_sid["ReadGatingAlarms"]["Resource"] == [
        f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:shop-prod-5xx",
        f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:shop-prod-latency",
    ]
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/relay/orders"
    assert by_sid["ShipPipelineLogs"]["Resource"][:2] == [group, f"{group}:log-stream:*"]
    wildcards = [s["Sid"] for s in policy["Statement"] if "*" in s["Resource"]]
    assert wildcards == ["EcrLogin", "PublishDeliveryMetrics"], "only where IAM allows nothing else"


def test_approver_tokens_are_readable_where_decisions_need_them(tmp_path: Path) -> None:
    manifest = shop(tmp_path, "p")
    prod = manifest.environments["prod"]
    assert "ReadApproverTokens" not in statements(pipeline_policy(manifest, ACCOUNT, REGION))
    update = {"require_token": True, "tokens_secret": "p/approvers"}
    tokens = prod.approval.model_copy(update=update)
    manifest.environments["prod"] = prod.model_copy(update={"approval": tokens})
    by_sid = statements(pipeline_policy(manifest, ACCOUNT, REGION))
    assert by_sid["ReadApproverTokens"] == {
        "Sid": "ReadApproverTokens",
        "Effect": "Allow",
        "Action": ["secretsmanager:GetSecretValue"],
        "Resource": [f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:p/approvers-??????"],
    }


def test_without_ecr_or_cloudwatch_there_is_nothing_of_them(tmp_path: Path) -> None:
    manifest = shop(tmp_path, "p")
    manifest = manifest.model_copy(
        update={
            "cloudwatch": manifest.cloudwatch.model_copy(update={"logs": False, "events": False})
        }
    )
    sids = list(statements(pipeline_policy(manifest, ACCOUNT, REGION)))
    assert sids == ["ReadEnvironmentSecrets", "PublishDeliveryMetrics", "ReadGatingAlarms"]


def test_scans_read_from_ecr_for_images_pushed_elsewhere(tmp_path: Path) -> None:
    manifest = shop(tmp_path, "p")
    manifest = manifest.model_copy(
        update={"image_scan": manifest.image_scan.model_copy(update={"source": "ecr"})}
    )
    scans = statements(pipeline_policy(manifest, ACCOUNT, REGION))["ReadImageScans"]
    assert scans["Action"] == ["ecr:DescribeImageScanFindings", "ecr:StartImageScan"]
    assert scans["Resource"][0] == f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/shop/orders"


def test_a_runtime_policy_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="needs no AWS permissions"):
        runtime_policy([])


# --- against moto over HTTP --------------------------------------------------------------------


@pytest.fixture
def secrets() -> Iterator[tuple[Any, str]]:
    """A unique prefix with its dev and prod secrets and payments' own prod secret."""
    client = boto3.client("secretsmanager")
    prefix = f"iam-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-dev", f"{prefix}-prod", f"{prefix}-payments-prod"]
    for name in names:
        client.create_secret(Name=name, SecretString='{"GREETING": "hello"}')
    # a look-alike that a prefix wildcard would also match
    client.create_secret(Name=f"{prefix}-dev-old", SecretString="{}")
    yield client, prefix
    for name in [*names, f"{prefix}-dev-old"]:
        client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)


@pytest.mark.stack
def test_the_runtime_policy_reads_exactly_its_own_secret(
    tmp_path: Path, secrets: tuple[Any, str]
) -> None:
    client, prefix = secrets
    arns = secret_arns(client, shop(tmp_path, prefix), "orders", "dev")
    assert arns == [client.describe_secret(SecretId=f"{prefix}-dev")["ARN"]]
    policy = runtime_policy(arns)
    assert policy == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadOwnConfiguration",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": arns,
            }
        ],
    }
    assert "*" not in json.dumps(policy) and "?" not in json.dumps(policy)
    iam = boto3.client("iam")
    created = iam.create_policy(
        PolicyName=f"{prefix}-orders-dev", PolicyDocument=json.dumps(policy)
    )["Policy"]
    try:
        version = iam.get_policy_version(
            PolicyArn=created["Arn"], VersionId=created["DefaultVersionId"]
        )["PolicyVersion"]
        document = version["Document"]
        if isinstance(document, str):
            document = json.loads(document)
        assert document["Statement"][0]["Resource"] == arns
    finally:
        iam.delete_policy(PolicyArn=created["Arn"])


@pytest.mark.stack
def test_a_service_with_its_own_secret_gets_both(tmp_path: Path, secrets: tuple[Any, str]) -> None:
    client, prefix = secrets
    arns = secret_arns(client, shop(tmp_path, prefix), "payments", "prod")
    assert [a.split(":secret:")[1].rsplit("-", 1)[0] for a in arns] == [
        f"{prefix}-prod",
        f"{prefix}-payments-prod",
    ]


@pytest.mark.stack
def test_a_missing_secret_is_named_with_its_field(tmp_path: Path) -> None:
    with pytest.raises(TerminalError) as error:
        secret_arns(boto3.client("secretsmanager"), shop(tmp_path, "absent"), "payments", "prod")
    message = str(error.value)
    assert "environments.prod.secrets: secret 'absent-prod'" in message
    assert "services.payments.secrets.prod: secret 'absent-payments-prod'" in message
    assert "create it" in message


@pytest.mark.stack
def test_the_pipeline_policy_is_accepted_by_iam(tmp_path: Path) -> None:
    policy = pipeline_policy(shop(tmp_path, "p", ECR), ACCOUNT, REGION)
    iam = boto3.client("iam")
    created = iam.create_policy(
        PolicyName=f"relay-pipeline-{uuid.uuid4().hex[:8]}", PolicyDocument=json.dumps(policy)
    )["Policy"]
    iam.delete_policy(PolicyArn=created["Arn"])


@pytest.mark.stack
def test_the_command_prints_the_policy(
    tmp_path: Path, secrets: tuple[Any, str], capsys: pytest.CaptureFixture[str]
) -> None:
    client, prefix = secrets
    path = shop(tmp_path, prefix).source
    assert main(["iam-policy", "orders", "dev", "--file", str(path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["Statement"][0]["Resource"] == [
        client.describe_secret(SecretId=f"{prefix}-dev")["ARN"]
    ]

    assert main(["iam-policy", "orders", "dev", "--pipeline", "--file", str(path)]) == 0
    sids = [s["Sid"] for s in json.loads(capsys.readouterr().out)["Statement"]]
    assert "ShipPipelineLogs" in sids

    assert main(["iam-policy", "shipping", "dev", "--file", str(path)]) == 1
    assert "no service named shipping" in capsys.readouterr().err
    assert main(["iam-policy", "orders", "qa", "--file", str(path)]) == 1
    assert "no environment 'qa'" in capsys.readouterr().err


def test_canaries_judged_by_cloudwatch_metrics_may_read_them(tmp_path: Path) -> None:
    manifest = shop(tmp_path, "p")
    assert "ReadCanaryMetrics" not in statements(pipeline_policy(manifest, ACCOUNT, REGION))
    prod = manifest.environments["prod"]
    analysis = prod.analysis.model_copy(
        update={
            "metrics": "cloudwatch",
            "cloudwatch_metrics": CloudWatchMetrics(
                namespace="AWS/ApplicationELB", requests="RequestCount", errors="5xx"
            ),
        }
    )
    environments = {**manifest.environments, "prod": prod.model_copy(update={"analysis": analysis})}
    judged = manifest.model_copy(update={"environments": environments})
    statement = statements(pipeline_policy(judged, ACCOUNT, REGION))["ReadCanaryMetrics"]
    assert statement["Action"] == ["cloudwatch:GetMetricData"]
