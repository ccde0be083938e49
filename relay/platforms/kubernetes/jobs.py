"""Tests that run where the services are: a Kubernetes Job in the environment's namespace.

On a kubernetes environment the services answer only at their cluster DNS names
(`orders.shop-dev.svc.cluster.local`), which a worker outside the cluster cannot reach. So
integration tests run as a Job: the image is the service's own (or its `test_image`), the
command is the tests', `<NAME>_URL` holds the cluster DNS names, the pod's log is the stage's
output and its exit code the verdict. The services' NetworkPolicies admit pods labelled as the
application's tests (`objects.network_policy`). A Job never retries (`backoffLimit: 0`: a flaky
test is a finding), is bounded by a deadline, and is deleted with its pods once read.
"""

from __future__ import annotations

import hashlib
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.client.exceptions import ApiException

from relay.errors import RelayError
from relay.junit import with_report
from relay.platforms.kubernetes.cluster import Cluster
from relay.platforms.kubernetes.objects import MANAGER, PREFIX, RUN_AS, Obj, test_pod_labels

LOG_READ_LIMIT = 5_000_000  # bytes of a pod's log read back (its JUnit report comes last)
LOG_LIMIT = 200_000  # of which the stage's output keeps the end
REPORT = Path("/tmp/relay-junit.xml")  # noqa: S108 - in the pod
BEGIN, END = "----- relay: junit begin -----", "----- relay: junit end -----"


def reporting_command(argv: Sequence[str]) -> list[str]:
    """`argv`, and after it its JUnit XML (pytest's `--junitxml`) printed to the log between
    markers, keeping its exit code: the log is all that leaves the pod."""
    run = shlex.join(with_report(list(argv), REPORT))
    script = (
        f"{run}; code=$?; if [ -f {REPORT} ]; then echo {shlex.quote(BEGIN)}; cat {REPORT}; "
        f"echo; echo {shlex.quote(END)}; fi; exit $code"
    )
    return ["/bin/sh", "-c", script]


def split_report(output: str) -> tuple[str, bytes]:
    """The log without the JUnit XML, and the XML (empty when the log carries none)."""
    start = output.find(BEGIN)
    stop = output.find(END, start + 1)
    if start < 0 or stop < 0:
        return output[-LOG_LIMIT:], b""
    report = output[start + len(BEGIN) : stop].strip()
    rest = output[:start] + output[stop + len(END) :].lstrip("\n")
    return rest[-LOG_LIMIT:], report.encode()


@dataclass(frozen=True)
class ClusterTests:
    """One run of a service's tests in a namespace."""

    app: str
    environment: str
    namespace: str
    service: str
    stage: str  # "integration-tests", ...
    image: str
    command: Sequence[str]
    env: Mapping[str, str]
    deadline_seconds: int = 600

    @property
    def name(self) -> str:
        """`<service>-<stage>-<hash>`: unique per run, within the 63 characters of a label."""
        seed = f"{self.image}{time.time_ns()}".encode()
        return f"{self.service[:30]}-{self.stage[:17]}-{hashlib.sha256(seed).hexdigest()[:8]}"


@dataclass(frozen=True)
class JobOutcome:
    exit_code: int | None  # None: the pod never ran to an end (deadline, unschedulable)
    output: str
    reason: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def job(spec: ClusterTests, name: str) -> Obj:
    # Not `relay.dev/service`: with the app label that is the service's own pod selector, and
    # its NetworkPolicy (egress to its dependencies only) would then hold the test pod too.
    labels = {
        **test_pod_labels(spec.app),
        f"{PREFIX}/tests-of": spec.service,
        f"{PREFIX}/environment": spec.environment,
        "app.kubernetes.io/managed-by": MANAGER,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": spec.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.deadline_seconds,
            "ttlSecondsAfterFinished": 3600,  # read and deleted by Relay; this is the backstop
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS,
                        "runAsGroup": RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "tests",
                            "image": spec.image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": list(spec.command),
                            "env": [{"name": k, "value": v} for k, v in sorted(spec.env.items())],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def run_job(api_client: ApiClient, spec: ClusterTests, poll_seconds: float = 0.5) -> JobOutcome:
    """Create the Job, wait until it ends (or its deadline passes), read its pod's log and exit
    code, and delete it with its pods.

    Raises:
        RelayError: the Job could not be created or read (the cluster's answer in it).
    """
    cluster = Cluster(api_client)
    name = spec.name
    cluster.apply(job(spec, name))
    try:
        deadline = time.monotonic() + spec.deadline_seconds + 30
        reason = "did not end before its deadline"
        while time.monotonic() < deadline:
            found = cluster.get("batch/v1", "Job", spec.namespace, name) or {}
            ended = _ended(found)
            if ended is not None:
                reason = ended
                break
            time.sleep(poll_seconds)
        pod = _pod_of(cluster, spec.namespace, name)
        return JobOutcome(_exit_code(pod), _log(api_client, spec.namespace, pod), reason)
    finally:
        cluster.delete_with_dependents("batch/v1", "Job", spec.namespace, name)


def _ended(job_obj: Obj) -> str | None:
    for condition in (job_obj.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            why = condition.get("reason") or condition["type"]
            return f"{condition['type'].lower()} ({why})"
    return None


def _pod_of(cluster: Cluster, namespace: str, job_name: str) -> Obj | None:
    pods = cluster.list("v1", "Pod", namespace, label_selector=f"job-name={job_name}")
    return pods[0] if pods else None


def _exit_code(pod: Obj | None) -> int | None:
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated is not None:
            return int(terminated.get("exitCode", 1))
    return None


def _log(api_client: ApiClient, namespace: str, pod: Obj | None) -> str:
    """The pod's log; a note instead when there is none to read (no pod, or a node that
    serves no logs, such as kwok's)."""
    if pod is None:
        return "(no pod was created for the Job)"
    name = pod["metadata"]["name"]
    try:
        text = CoreV1Api(api_client).read_namespaced_pod_log(
            name, namespace, limit_bytes=LOG_READ_LIMIT, _request_timeout=60
        )
    except ApiException as exc:
        return f"(the log of pod {namespace}/{name} could not be read: {exc.status} {exc.reason})"
    except Exception as exc:  # noqa: BLE001 - a node that cannot be reached for logs
        raise RelayError(f"reading the log of pod {namespace}/{name}: {exc}") from exc
    return str(text)
