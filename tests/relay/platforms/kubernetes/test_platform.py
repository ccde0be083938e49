"""The kubernetes platform against a real control plane (the control_plane fixture in
tests/conftest.py): the objects and fields it writes, idempotent server-side apply, conflicts
with other managers, blue/green, canary by HTTPRoute weights and by replica ratio, and a
stalled rollout undone."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devstack.controlplane import NEVER_READY
from relay.aws.secrets import SecretVersion, ServiceConfig
from relay.errors import RolledBack
from relay.platforms.kubernetes import (
    ApplyConflict,
    KubernetesPlatform,
    KubeRollout,
    KubeSpec,
    Neighbour,
    kube_kept_versions,
    note_kept,
)
from relay.platforms.kubernetes.objects import PREFIX
from relay.registry import ImageRef

RESOURCES = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"cpu": "500m", "memory": "256Mi"},
}
CONFIG = ServiceConfig((SecretVersion("dev-config", "v1"),), ("DATABASE_URL",))
VALUES = {"DATABASE_URL": "postgres://orders:hunter2@db/orders"}


def image(tag: str, name: str = "orders") -> str:
    return f"127.0.0.1:5000/shop/{name}@sha256:{hashlib.sha256(tag.encode()).hexdigest()}"


@pytest.fixture
def api(control_plane: Any) -> Iterator[client.ApiClient]:
    api = control_plane.api_client()
    yield api
    api.close()


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"relay-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def make_spec(namespace: str, strategy: str = "rolling", tag: str = "v1", **extra: Any) -> KubeSpec:
    fields: dict[str, Any] = {
        "app": "shop",
        "environment": "prod",
        "namespace": namespace,
        "service": "orders",
        "image": ImageRef.parse(image(tag)),
        "commit": f"commit-{tag}",
        "tree": f"tree-{tag}",
        "port": 8002,
        "health": "/healthz",
        "strategy": strategy,
        "replicas": 2,
        "resources": RESOURCES,
        "progress_deadline_seconds": 5,
        "depends_on": (Neighbour("inventory", 8001),),
        "dependents": ("frontend", "checkout"),
        "env": {"INVENTORY_URL": f"http://inventory.{namespace}.svc.cluster.local:8001"},
        "config": CONFIG,
        "release": f"release-{tag}",
    }
    return KubeSpec(**(fields | extra))


def get(api: client.ApiClient, kind: str, namespace: str, name: str) -> dict[str, Any]:
    apps, core, net = client.AppsV1Api(api), client.CoreV1Api(api), client.NetworkingV1Api(api)
    read = {
        "Deployment": apps.read_namespaced_deployment,
        "Service": core.read_namespaced_service,
        "Secret": core.read_namespaced_secret,
        "NetworkPolicy": net.read_namespaced_network_policy,
    }[kind]
    return api.sanitize_for_serialization(read(name, namespace))


def route_weights(api: client.ApiClient, namespace: str) -> dict[str, int]:
    route = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", "orders"
    )
    return {ref["name"]: ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"]}


def replica_sets(api: client.ApiClient, namespace: str, track: str) -> dict[str, dict[str, int]]:
    """image -> {replicas, available} of the service's ReplicaSets on `track`."""
    found = client.AppsV1Api(api).list_namespaced_replica_set(
        namespace, label_selector=f"{PREFIX}/service=orders,{PREFIX}/track={track}"
    )
    return {
        rs.spec.template.spec.containers[0].image: {
            "replicas": rs.spec.replicas or 0,
            "available": rs.status.available_replicas or 0,
        }
        for rs in found.items
    }


def test_deployment_service_secret_and_network_policy_are_written(
    api: client.ApiClient, namespace: str
) -> None:
    platform = KubernetesPlatform(api)
    spec = make_spec(namespace)

    result = platform.deploy(spec, VALUES)

    assert result.changed and result.image == str(spec.image)
    deployment = get(api, "Deployment", namespace, "orders")
    meta, pod = deployment["metadata"], deployment["spec"]["template"]
    assert meta["labels"][f"{PREFIX}/service"] == "orders"
    assert meta["labels"][f"{PREFIX}/track"] == "stable"
    assert pod["metadata"]["labels"][f"{PREFIX}/version"] == spec.image.digest.split(":")[-1][:12]
    assert meta["annotations"][f"{PREFIX}/commit"] == "commit-v1"
    assert meta["annotations"][f"{PREFIX}/tree"] == "tree-v1"
    assert meta["annotations"][f"{PREFIX}/release"] == "release-v1"
    assert deployment["spec"]["progressDeadlineSeconds"] == 5
    assert pod["spec"]["automountServiceAccountToken"] is False
    (container,) = pod["spec"]["containers"]
    assert container["image"] == str(spec.image)  # by digest
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": "http",
        "scheme": "HTTP",
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"][0]["containerPort"] == 8002
    assert container["resources"] == RESOURCES
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (env_from,) = container["envFrom"]
    secret = get(api, "Secret", namespace, env_from["secretRef"]["name"])
    assert env_from["secretRef"]["name"].startswith("orders-config-")
    assert set(secret["data"]) == {"DATABASE_URL"} and secret["immutable"] is True
    service = get(api, "Service", namespace, "orders")
    assert service["spec"]["selector"] == {
        f"{PREFIX}/app": "shop",
        f"{PREFIX}/service": "orders",
        f"{PREFIX}/track": "stable",
    }
    assert service["spec"]["ports"][0]["port"] == 8002
    policy = get(api, "NetworkPolicy", namespace, "orders")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    tests, source = ingress["from"]
    assert tests["podSelector"]["matchLabels"] == {
        f"{PREFIX}/app": "shop",
        f"{PREFIX}/role": "tests",
    }
    assert source["podSelector"]["matchExpressions"] == [
        {"key": f"{PREFIX}/service", "operator": "In", "values": ["checkout", "frontend"]}
    ]
    assert [rule["ports"] for rule in policy["egress"]][0] == [{"protocol": "TCP", "port": 8001}]
    assert policy["egress"][1]["ports"][0] == {"protocol": "UDP", "port": 53}


def test_reapplying_changes_nothing(api: client.ApiClient, namespace: str) -> None:
    platform = KubernetesPlatform(api)
    spec = make_spec(namespace)
    platform.deploy(spec, VALUES)
    kinds = ("Deployment", "Service", "NetworkPolicy")
    before = {
        kind: get(api, kind, namespace, "orders")["metadata"]["resourceVersion"] for kind in kinds
    }

    again = platform.deploy(spec, VALUES)
    rollout = platform.start_new(spec, VALUES)  # every object applied once more, for real

    assert not again.changed
    after = {
        kind: get(api, kind, namespace, "orders")["metadata"]["resourceVersion"] for kind in kinds
    }
    assert after == before
    assert rollout.stable is not None and rollout.stable.image == str(spec.image)


def test_a_manual_edit_by_another_manager_is_reported_not_overwritten(
    api: client.ApiClient, namespace: str
) -> None:
    platform = KubernetesPlatform(api)
    platform.deploy(make_spec(namespace), VALUES)
    client.AppsV1Api(api).patch_namespaced_deployment_scale(
        "orders", namespace, {"spec": {"replicas": 3}}, field_manager="kubectl-scale"
    )

    with pytest.raises(ApplyConflict) as raised:
        platform.deploy(make_spec(namespace, tag="v2"), VALUES)

    message = str(raised.value)
    assert ".spec.replicas" in message and "kubectl-scale" in message
    assert "--force-conflicts" in message
    assert get(api, "Deployment", namespace, "orders")["spec"]["replicas"] == 3  # not clobbered


def test_blue_green_switches_the_service_selector(api: client.ApiClient, namespace: str) -> None:
    platform = KubernetesPlatform(api)
    first = platform.start_new(make_spec(namespace, "blue_green"), VALUES)
    platform.switch(first)
    platform.stop_previous(first)
    assert first.track == "blue"

    rollout = platform.start_new(make_spec(namespace, "blue_green", "v2"), VALUES)

    def selected(name: str) -> str:
        return get(api, "Service", namespace, name)["spec"]["selector"][f"{PREFIX}/track"]

    assert rollout.track == "green"
    assert selected("orders-preview") == "green" and selected("orders") == "blue"
    platform.switch(rollout)
    assert selected("orders") == "green"
    platform.stop_previous(rollout)
    assert get(api, "Deployment", namespace, "orders-blue")["spec"]["replicas"] == 0
    green = get(api, "Deployment", namespace, "orders-green")
    assert green["status"]["availableReplicas"] == 2
    assert green["spec"]["template"]["spec"]["containers"][0]["image"] == image("v2")


def pods_of(api: client.ApiClient, namespace: str, track: str) -> set[str]:
    found = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"{PREFIX}/track={track}"
    )
    return {pod.metadata.name for pod in found.items if pod.metadata.deletion_timestamp is None}


def blue_then_green(platform: KubernetesPlatform, namespace: str) -> KubeRollout:
    """v1 serving on blue, then v2 switched to on green (the previous color not stopped)."""
    first = platform.start_new(make_spec(namespace, "blue_green"), VALUES)
    platform.switch(first)
    platform.stop_previous(first)
    # v2 also changes a setting: the kept v1 must keep its own pods, not take v2's settings
    changed = {"INVENTORY_URL": "http://inventory-v2:8001"}
    rollout = platform.start_new(make_spec(namespace, "blue_green", "v2", env=changed), VALUES)
    platform.switch(rollout)
    return rollout


def test_blue_green_switches_back_to_the_kept_color_without_starting_a_pod(
    api: client.ApiClient, namespace: str
) -> None:
    platform = KubernetesPlatform(api)
    rollout = blue_then_green(platform, namespace)
    # (an annotation bumps a Deployment's generation, so the template is what is compared)
    template = get(api, "Deployment", namespace, "orders-blue")["spec"]["template"]
    kept = platform.keep_previous(rollout, 60)
    assert kept is not None and (kept.track, kept.image) == ("blue", image("v1"))
    blue = get(api, "Deployment", namespace, "orders-blue")
    assert blue["spec"]["replicas"] == 2
    assert blue["metadata"]["annotations"][f"{PREFIX}/keep-until"] == kept.until
    serving_pods = pods_of(api, namespace, "blue")
    assert blue["spec"]["template"] == template, "keeping it changed nothing of its pods"

    v1 = make_spec(namespace, "blue_green", "v1")
    found = platform.kept(v1)
    assert found is not None and found.track == "blue"
    result = platform.switch_back(v1, found)

    def selected(name: str) -> str:
        return get(api, "Service", namespace, name)["spec"]["selector"][f"{PREFIX}/track"]

    assert selected("orders") == "blue" and selected("orders-preview") == "blue"
    assert (result.image, result.previous) == (image("v1"), image("v2"))
    assert pods_of(api, namespace, "blue") == serving_pods, "no pod of v1 was started"
    assert get(api, "Deployment", namespace, "orders-green")["spec"]["replicas"] == 0
    blue = get(api, "Deployment", namespace, "orders-blue")
    assert f"{PREFIX}/keep-until" not in blue["metadata"]["annotations"], "no longer kept"
    assert blue["spec"]["template"] == template, "v1 serves as it was, its own settings"
    assert not platform.stop_kept(kept), "the scheduled stop leaves a color that serves again"
    assert get(api, "Deployment", namespace, "orders-blue")["spec"]["replicas"] == 2


def test_a_kept_color_is_scaled_down_once_its_window_closed(
    api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    platform = KubernetesPlatform(api)
    rollout = blue_then_green(platform, namespace)
    kept = platform.keep_previous(rollout, 0.5)
    assert kept is not None
    note_kept(tmp_path, kept)
    time.sleep(0.6)

    assert platform.kept(make_spec(namespace, "blue_green", "v1")) is None, "its window closed"
    [note] = kube_kept_versions(tmp_path)
    assert note == kept and note.expired
    assert platform.stop_kept(note)
    assert get(api, "Deployment", namespace, "orders-blue")["spec"]["replicas"] == 0
    assert get(api, "Service", namespace, "orders")["spec"]["selector"][f"{PREFIX}/track"] == (
        "green"
    )
    assert get(api, "Deployment", namespace, "orders-green")["status"]["availableReplicas"] == 2


def test_the_next_deploy_reuses_a_kept_color_and_the_scheduled_stop_leaves_it(
    api: client.ApiClient, namespace: str
) -> None:
    platform = KubernetesPlatform(api)
    kept = platform.keep_previous(blue_then_green(platform, namespace), 60)
    assert kept is not None
    third = platform.start_new(make_spec(namespace, "blue_green", "v3"), VALUES)
    assert third.track == "blue", "the kept color is the free one"
    platform.switch(third)
    assert not platform.stop_kept(kept), "blue runs v3 now, not the kept v1"
    blue = get(api, "Deployment", namespace, "orders-blue")
    assert blue["spec"]["template"]["spec"]["containers"][0]["image"] == image("v3")


def test_canary_moves_http_route_weights_step_by_step(
    api: client.ApiClient, namespace: str
) -> None:
    platform = KubernetesPlatform(api)
    platform.deploy(make_spec(namespace, "canary"), VALUES)  # first deploy: rolling
    spec = make_spec(namespace, "canary", "v2")

    rollout = platform.start_new(spec, VALUES)
    assert rollout.traffic == "gateway_api"
    observed = [route_weights(api, namespace)]
    for weight in (10, 50):
        assert platform.set_canary_weight(rollout, weight) == weight
        observed.append(route_weights(api, namespace))
    platform.switch(rollout)
    observed.append(route_weights(api, namespace))
    platform.stop_previous(rollout)

    assert observed == [
        {"orders-stable": 100, "orders-canary": 0},
        {"orders-stable": 90, "orders-canary": 10},
        {"orders-stable": 50, "orders-canary": 50},
        {"orders-stable": 100, "orders-canary": 0},
    ]
    stable = get(api, "Deployment", namespace, "orders")
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == str(spec.image)
    assert get(api, "Deployment", namespace, "orders-canary")["spec"]["replicas"] == 0


def ingress_weights(api: client.ApiClient, namespace: str) -> dict[str, int]:
    """The weights of the ALB action annotation, as the AWS Load Balancer Controller reads it."""
    found = client.NetworkingV1Api(api).read_namespaced_ingress("orders", namespace)
    action = json.loads(
        found.metadata.annotations["alb.ingress.kubernetes.io/actions.orders-weighted"]
    )
    return {g["serviceName"]: g["weight"] for g in action["forwardConfig"]["targetGroups"]}


def test_canary_on_alb_moves_the_ingress_target_group_weights_and_aborts_back(
    api: client.ApiClient, namespace: str
) -> None:
    """`traffic: alb` (EKS): the same steps through an Ingress for the AWS Load Balancer
    Controller. No controller runs here: the Ingress is what it would read."""
    platform = KubernetesPlatform(api)
    platform.deploy(make_spec(namespace, "canary", traffic="alb"), VALUES)
    spec = make_spec(namespace, "canary", "v2", traffic="alb")

    rollout = platform.start_new(spec, VALUES)
    assert rollout.traffic == "alb"
    observed = [ingress_weights(api, namespace)]
    assert platform.set_canary_weight(rollout, 20) == 20
    observed.append(ingress_weights(api, namespace))
    assert get(api, "Deployment", namespace, "orders-canary")["spec"]["replicas"] == 1
    platform.abort(rollout)
    observed.append(ingress_weights(api, namespace))

    assert observed == [
        {"orders-stable": 100, "orders-canary": 0},
        {"orders-stable": 80, "orders-canary": 20},
        {"orders-stable": 100, "orders-canary": 0},
    ]
    ingress = client.NetworkingV1Api(api).read_namespaced_ingress("orders", namespace)
    assert ingress.spec.ingress_class_name == "alb"
    backend = ingress.spec.rules[0].http.paths[0].backend.service
    assert (backend.name, backend.port.name) == ("orders-weighted", "use-annotation")
    assert get(api, "Deployment", namespace, "orders-canary")["spec"]["replicas"] == 0


def test_canary_without_gateway_api_splits_by_replica_ratio(
    api: client.ApiClient, namespace: str
) -> None:
    platform = KubernetesPlatform(api, traffic="replica_ratio")
    platform.deploy(make_spec(namespace, "canary", replicas=4), VALUES)
    rollout = platform.start_new(make_spec(namespace, "canary", "v2", replicas=4), VALUES)

    assert rollout.traffic == "replica_ratio"
    assert platform.set_canary_weight(rollout, 25) == 25
    assert get(api, "Deployment", namespace, "orders")["spec"]["replicas"] == 3
    assert get(api, "Deployment", namespace, "orders-canary")["spec"]["replicas"] == 1
    assert platform.set_canary_weight(rollout, 10) == 25  # one pod is the finest step
    assert get(api, "Service", namespace, "orders")["spec"]["selector"] == {
        f"{PREFIX}/app": "shop",
        f"{PREFIX}/service": "orders",
    }
    platform.abort(rollout)
    assert get(api, "Deployment", namespace, "orders")["spec"]["replicas"] == 4
    assert get(api, "Deployment", namespace, "orders-canary")["spec"]["replicas"] == 0


def test_a_bad_image_hits_its_progress_deadline_and_is_rolled_back(
    api: client.ApiClient, namespace: str
) -> None:
    platform = KubernetesPlatform(api)
    good = make_spec(namespace)
    platform.deploy(good, VALUES)
    bad = replace(
        make_spec(namespace, tag="v2"), image=ImageRef.parse(image("v2", f"orders-{NEVER_READY}"))
    )

    with pytest.raises(RolledBack) as raised:
        platform.deploy(bad, VALUES)

    message = str(raised.value)
    assert "ProgressDeadlineExceeded" in message and "0/2 ready" in message
    assert "pod orders-" in message and "ImagePullBackOff" in message
    sets = replica_sets(api, namespace, "stable")
    assert sets[str(good.image)]["available"] == 2
    assert sets[str(bad.image)]["replicas"] == 0
    deployment = get(api, "Deployment", namespace, "orders")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == str(good.image)
    assert deployment["status"]["availableReplicas"] == 2
