"""Adapters for the AWS services Relay uses: Secrets Manager, ECR, CloudWatch (metrics, alarms,
logs) and IAM policies. Each takes a boto3 client made by the caller (the Prefect layer makes
them from an `AwsCredentials` block, see `blocks/aws.py`), so nothing here knows whether it
talks to AWS or to a local endpoint named by `AWS_ENDPOINT_URL`.
"""
