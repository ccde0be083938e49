"""Following a Deployment's rollout until it is complete or stalled, and saying why it stalled.

Complete means the controller has seen the latest spec (`observedGeneration`) and every pod is
of the new template, available (`updatedReplicas == availableReplicas == replicas`, and no old
pod left in `status.replicas`). Stalled means the controller gave up: condition Progressing
False with reason ProgressDeadlineExceeded, after `progressDeadlineSeconds` without progress.
The controller's verdict is the one that counts; Relay's own wait is only a bound on top of it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from relay.platforms.kubernetes.cluster import Cluster
from relay.platforms.kubernetes.objects import PREFIX, Obj

POLL_SECONDS = 0.5
# How much longer than the progress deadline Relay waits for the controller's verdict.
GRACE_SECONDS = 30


@dataclass(frozen=True)
class Progress:
    """Where a rollout stands: `complete`, or `stalled` with the controller's reason."""

    complete: bool
    stalled: str | None = None


def progress(deployment: Obj) -> Progress:
    """Read a Deployment (as the API returns it) the way `kubectl rollout status` does."""
    meta, spec, status = deployment["metadata"], deployment["spec"], deployment.get("status", {})
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return Progress(False)
    for condition in status.get("conditions", []):
        if condition["type"] == "Progressing" and condition.get("reason") == (
            "ProgressDeadlineExceeded"
        ):
            return Progress(False, f"ProgressDeadlineExceeded: {condition.get('message', '')}")
    want = spec.get("replicas", 1)
    complete = (
        status.get("updatedReplicas", 0) == want
        and status.get("availableReplicas", 0) == want
        and status.get("replicas", 0) == want
    )
    return Progress(complete)


def describe_stall(
    reason: str, want: int, pods: Sequence[Obj], events: Mapping[str, Sequence[str]]
) -> str:
    """`ProgressDeadlineExceeded: ...; 0/2 ready; pod orders-x: ImagePullBackOff: ...` from the
    condition, the new version's pods and their events (pod name -> messages)."""
    ready = sum(1 for pod in pods if _ready(pod))
    parts = [reason, f"{ready}/{want} ready"]
    for pod in pods:
        if _ready(pod):
            continue
        name = pod["metadata"]["name"]
        why = _waiting(pod) or pod.get("status", {}).get("phase", "unknown")
        seen = "; ".join(events.get(name, [])[-3:])
        parts.append(f"pod {name}: {why}" + (f" (events: {seen})" if seen else ""))
    return "; ".join(parts)


def _ready(pod: Obj) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _waiting(pod: Obj) -> str:
    for container in pod.get("status", {}).get("containerStatuses", []) or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting:
            message = waiting.get("message")
            return str(waiting.get("reason", "Waiting")) + (f": {message}" if message else "")
    return ""


def wait_rollout(cluster: Cluster, namespace: str, name: str, version: str) -> str | None:
    """Wait until the Deployment `name` has rolled out; None when it has, else why it stalled.

    `version` (the `relay.dev/version` label) picks the new pods whose state explains a stall.
    """
    first = cluster.get("apps/v1", "Deployment", namespace, name)
    if first is None:
        return f"Deployment {namespace}/{name} does not exist"
    bound = time.monotonic() + first["spec"]["progressDeadlineSeconds"] + GRACE_SECONDS
    deployment = first
    while True:
        state = progress(deployment)
        if state.complete:
            return None
        if state.stalled is not None or time.monotonic() > bound:
            reason = state.stalled or "no verdict from the Deployment controller in time"
            return _explain(cluster, deployment, reason, version)
        time.sleep(POLL_SECONDS)
        deployment = cluster.get("apps/v1", "Deployment", namespace, name) or deployment


def _explain(cluster: Cluster, deployment: Obj, reason: str, version: str) -> str:
    namespace = deployment["metadata"]["namespace"]
    labels = deployment["spec"]["selector"]["matchLabels"] | {f"{PREFIX}/version": version}
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    pods = cluster.list("v1", "Pod", namespace, label_selector=selector)
    events = {
        pod["metadata"]["name"]: _events(cluster, namespace, pod["metadata"]["name"])
        for pod in pods
    }
    return describe_stall(reason, deployment["spec"]["replicas"], pods, events)


def _events(cluster: Cluster, namespace: str, pod: str) -> list[str]:
    about = f"involvedObject.kind=Pod,involvedObject.name={pod}"
    found = cluster.list("v1", "Event", namespace, field_selector=about)
    return [f"{e.get('reason', '')}: {e.get('message', '')}" for e in found]
