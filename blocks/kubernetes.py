"""Kubernetes API clients for the `kubernetes` platform, from what relay.yaml names.

`environments.<env>.kubernetes` says how to reach the cluster (see `relay.manifest.Kubernetes`):
a prefect-kubernetes `KubernetesClusterConfig` block (its kubeconfig and context live in
Prefect, e.g. saved once from an EKS kubeconfig), a kubeconfig file on the worker, the pod's
own service account (a worker running in the cluster), or the default kubeconfig.
"""

from __future__ import annotations

import os

from kubernetes import config
from kubernetes.client import ApiClient, Configuration
from prefect_kubernetes.credentials import KubernetesClusterConfig

from relay.platforms.kubernetes import ClusterAccess


def cluster_client(access: ClusterAccess) -> ApiClient:
    """A new official `kubernetes` ApiClient for `access`; close it when done."""
    if access.cluster_block is not None:
        block = KubernetesClusterConfig.load(access.cluster_block, _sync=True)  # async callers too
        return config.new_client_from_config_dict(block.config, context=block.context_name)
    if access.kubeconfig is not None:
        return config.new_client_from_config(config_file=access.kubeconfig, context=access.context)
    if "KUBERNETES_SERVICE_HOST" in os.environ:
        settings = Configuration()
        config.load_incluster_config(client_configuration=settings)
        return ApiClient(settings)
    return config.new_client_from_config(context=access.context)
