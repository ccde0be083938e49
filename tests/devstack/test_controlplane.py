"""The real control plane (devstack/controlplane.py) does what the Kubernetes platform
will rely on, through the official `kubernetes` client: rollouts by digest, progress deadlines
for an image that never becomes Ready, NetworkPolicy, Secrets as envFrom, Gateway API routes."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from devstack.controlplane import NEVER_READY

TIMEOUT = 60.0  # every wait below is bounded by this


def digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


IMAGE = f"127.0.0.1:5000/shop/orders@{digest('orders')}"
BAD_IMAGE = f"127.0.0.1:5000/shop/orders-{NEVER_READY}@{digest('orders-bad')}"


def wait_for(what: str, probe: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def assert_subset(expected: Any, actual: Any, path: str = "") -> None:
    """Everything written is read back unchanged (the server may add defaults around it)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not a mapping"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing in {actual!r}"
            assert_subset(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual!r}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_subset(e, a, f"{path}[{i}]")
    else:
        assert expected == actual, f"{path}: wrote {expected!r}, read back {actual!r}"


@pytest.fixture
def api(control_plane) -> Iterator[client.ApiClient]:
    api = control_plane.api_client()
    yield api
    api.close()


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    # pods are admitted once the service-account controller has made `default` here
    wait_for(
        "the default service account",
        lambda: any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items
        ),
        timeout=30,
    )
    yield name
    core.delete_namespace(name)


def deployment(name: str, image: str, replicas: int = 1, **spec: Any) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "app", "image": image, "ports": [{"containerPort": 8080}]}
                    ]
                },
            },
            **spec,
        },
    }


def test_control_plane_is_up(control_plane, api) -> None:
    core = client.CoreV1Api(api)
    node = core.read_node(control_plane.node_name)
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    assert core.read_namespace("default").status.phase == "Active"
    assert control_plane.kubeconfig.is_file()
    assert control_plane.server.startswith("https://127.0.0.1:")
    assert control_plane.startup_seconds is not None and control_plane.startup_seconds < 90


def test_deployment_by_digest_rolls_out(control_plane, api, namespace) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("orders", IMAGE, replicas=3))

    rs = wait_for(
        "the controller manager's ReplicaSet",
        lambda: apps.list_namespaced_replica_set(namespace, label_selector="app=orders").items,
    )
    assert len(rs) == 1
    assert rs[0].metadata.owner_references[0].kind == "Deployment"
    assert rs[0].metadata.owner_references[0].name == "orders"
    assert rs[0].spec.template.spec.containers[0].image == IMAGE

    def available() -> int:
        status = apps.read_namespaced_deployment_status("orders", namespace).status
        return status.available_replicas == 3 and status.updated_replicas == 3

    wait_for("availableReplicas == 3", available)
    pods = core.list_namespaced_pod(namespace, label_selector="app=orders").items
    assert len(pods) == 3
    for pod in pods:
        assert pod.spec.node_name == control_plane.node_name  # placed by the real scheduler
        assert pod.status.phase == "Running"
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
        assert pod.status.container_statuses[0].image == IMAGE
    conditions = {
        c.type: c for c in apps.read_namespaced_deployment("orders", namespace).status.conditions
    }
    assert conditions["Available"].status == "True"
    assert conditions["Progressing"].reason == "NewReplicaSetAvailable"


def test_never_ready_image_hits_progress_deadline(api, namespace) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(
        namespace, deployment("payments", BAD_IMAGE, progressDeadlineSeconds=5)
    )

    def deadline_exceeded():
        status = apps.read_namespaced_deployment_status("payments", namespace).status
        for c in status.conditions or []:
            if c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded":
                return c
        return None

    condition = wait_for("Progressing reason ProgressDeadlineExceeded", deadline_exceeded)
    assert condition.status == "False"
    status = apps.read_namespaced_deployment_status("payments", namespace).status
    assert not status.available_replicas
    (pod,) = core.list_namespaced_pod(namespace, label_selector="app=payments").items
    assert pod.status.phase == "Pending"
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "False"
    assert pod.status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"


def test_network_policy_and_secret_env_from_are_accepted_as_written(api, namespace) -> None:
    net, core, apps = client.NetworkingV1Api(api), client.CoreV1Api(api), client.AppsV1Api(api)
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "orders", "labels": {"relay/service": "orders"}},
        "spec": {
            "podSelector": {"matchLabels": {"app": "orders"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}],
                    "ports": [{"protocol": "TCP", "port": 8080}],
                }
            ],
            "egress": [
                {
                    "to": [{"podSelector": {"matchLabels": {"app": "payments"}}}],
                    "ports": [{"protocol": "TCP", "port": 8080}],
                },
                {
                    "to": [{"namespaceSelector": {}}],
                    "ports": [{"protocol": "UDP", "port": 53}],
                },
            ],
        },
    }
    net.create_namespaced_network_policy(namespace, policy)
    got = api.sanitize_for_serialization(net.read_namespaced_network_policy("orders", namespace))
    assert_subset(policy["spec"], got["spec"])
    assert got["metadata"]["labels"] == policy["metadata"]["labels"]

    data = {"DATABASE_URL": "postgres://orders@db/orders", "API_KEY": "s3cr3t"}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "orders-env"},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    core.create_namespaced_secret(namespace, secret)
    got = core.read_namespaced_secret("orders-env", namespace)
    assert {k: base64.b64decode(v).decode() for k, v in got.data.items()} == data
    assert got.type == "Opaque"

    dep = deployment("orders", IMAGE)
    env_from = [{"secretRef": {"name": "orders-env"}}]
    dep["spec"]["template"]["spec"]["containers"][0]["envFrom"] = env_from
    apps.create_namespaced_deployment(namespace, dep)
    got = api.sanitize_for_serialization(apps.read_namespaced_deployment("orders", namespace))
    assert_subset(dep["spec"], got["spec"])
    assert got["spec"]["template"]["spec"]["containers"][0]["envFrom"] == env_from

    def ready_pod():
        pods = core.list_namespaced_pod(namespace, label_selector="app=orders").items
        return [p for p in pods if p.status.phase == "Running"]

    (pod,) = wait_for("the envFrom pod running", ready_pod)
    assert api.sanitize_for_serialization(pod.spec.containers[0].env_from) == env_from


def test_httproute_with_weighted_backends_is_accepted(control_plane, api, namespace) -> None:
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(
        "httproutes.gateway.networking.k8s.io"
    )
    assert {c.type: c.status for c in crd.status.conditions}["Established"] == "True"
    assert "v1" in [v.name for v in crd.spec.versions if v.served]
    assert crd.metadata.annotations.get("gateway.networking.k8s.io/channel") == "standard"

    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "orders"},
        "spec": {
            "parentRefs": [{"name": "shop"}],
            "hostnames": ["orders.shop.test"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"name": "orders-blue", "port": 8080, "weight": 90},
                        {"name": "orders-green", "port": 8080, "weight": 10},
                    ],
                }
            ],
        },
    }
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", route
    )
    got = custom.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", "orders"
    )
    assert_subset(route["spec"], got["spec"])
    weights = {b["name"]: b["weight"] for b in got["spec"]["rules"][0]["backendRefs"]}
    assert weights == {"orders-blue": 90, "orders-green": 10}

    # the CRD's own validation is live: a negative weight is refused
    bad = {**route, "metadata": {"name": "bad"}}
    negative = [{"name": "orders-blue", "port": 8080, "weight": -1}]
    bad["spec"] = {**route["spec"], "rules": [{"backendRefs": negative}]}
    with pytest.raises(client.ApiException) as refused:
        custom.create_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "httproutes", bad
        )
    assert refused.value.status == 422
