"""The `kubernetes` platform (see `platform.py`): objects rendered in `objects.py`, applied
server-side in `cluster.py`, rollouts followed in `rollout.py`."""

from relay.platforms.kubernetes.cluster import ApplyConflict, Cluster
from relay.platforms.kubernetes.objects import ClusterAccess, KubeSpec, Neighbour
from relay.platforms.kubernetes.platform import (
    KubeKept,
    KubernetesPlatform,
    KubeRollout,
    Serving,
    Version,
    forget_kept,
    kube_kept_versions,
    note_kept,
)

__all__ = [
    "ApplyConflict",
    "Cluster",
    "ClusterAccess",
    "KubeKept",
    "KubeRollout",
    "KubeSpec",
    "KubernetesPlatform",
    "Neighbour",
    "Serving",
    "Version",
    "forget_kept",
    "kube_kept_versions",
    "note_kept",
]
