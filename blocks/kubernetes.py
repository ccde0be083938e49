"""Kubernetes API clients for the `kubernetes` platform, from what relay.yaml names.

`environments.<env>.kubernetes` says how to reach the cluster (see `relay.manifest.Kubernetes`):
a prefect-kubernetes `KubernetesClusterConfig` block (its kubeconfig and context live in
Prefect, e.g. saved once from an EKS kubeconfig), an EKS cluster by name (through the AWS
credentials block, `blocks/aws.py`: no aws CLI, no kubeconfig), a kubeconfig file on the worker,
the pod's own service account (a worker running in the cluster), or the default kubeconfig.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from kubernetes import config
from kubernetes.client import ApiClient, Configuration
from prefect_kubernetes.credentials import KubernetesClusterConfig

from blocks.aws import aws_client
from relay.aws.eks import EksTokens, describe_cluster
from relay.platforms.kubernetes import ClusterAccess
from relay.settings import relay_home


def cluster_client(access: ClusterAccess) -> ApiClient:
    """A new official `kubernetes` ApiClient for `access`; close it when done."""
    if access.cluster_block is not None:
        block = KubernetesClusterConfig.load(access.cluster_block, _sync=True)  # async callers too
        return config.new_client_from_config_dict(block.config, context=block.context_name)
    if access.eks_cluster is not None:
        return eks_client(access.eks_cluster)
    if access.kubeconfig is not None:
        return config.new_client_from_config(config_file=access.kubeconfig, context=access.context)
    if "KUBERNETES_SERVICE_HOST" in os.environ:
        settings = Configuration()
        config.load_incluster_config(client_configuration=settings)
        return ApiClient(settings)
    return config.new_client_from_config(context=access.context)


def eks_client(name: str) -> ApiClient:
    """An ApiClient for EKS cluster `name`: its endpoint and CA from eks:DescribeCluster, and a
    bearer token from STS that is made again before it lapses (see `relay.aws.eks`)."""
    endpoint = describe_cluster(aws_client("eks"), name)
    tokens = EksTokens(aws_client("sts"), name)
    settings = Configuration()
    settings.host = endpoint.endpoint
    settings.ssl_ca_cert = str(_ca_file(endpoint.ca_pem))
    settings.api_key_prefix = {"authorization": "Bearer"}
    settings.api_key = {"authorization": tokens.current()}

    def renew(configuration: Configuration) -> None:
        configuration.api_key["authorization"] = tokens.current()

    settings.refresh_api_key_hook = renew  # the client calls it before every request
    return ApiClient(settings)


def _ca_file(pem: bytes) -> Path:
    """The CA as a file, which the kubernetes client needs: kept by its content's hash."""
    path = relay_home() / "eks" / f"{hashlib.sha256(pem).hexdigest()[:16]}.crt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(pem)
        partial.replace(path)
    return path
