"""The `kubernetes` platform (see `platform.py`): objects rendered in `objects.py`, applied
server-side in `cluster.py`, rollouts followed in `rollout.py`."""

from relay.platforms.kubernetes.cluster import ApplyConflict, Cluster
from relay.platforms.kubernetes.objects import ClusterAccess, KubeSpec, Neighbour
from relay.platforms.kubernetes.platform import KubernetesPlatform, KubeRollout, Version

__all__ = [
    "ApplyConflict",
    "Cluster",
    "ClusterAccess",
    "KubeRollout",
    "KubeSpec",
    "KubernetesPlatform",
    "Neighbour",
    "Version",
]
