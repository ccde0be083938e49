"""A kubernetes environment deploys through the same strategy subflows as docker
(flows/strategies, run by the stack's Prefect server) against the real control plane."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prefect_docker import DockerHost

from devstack.controlplane import NEVER_READY
from flows.strategies import blue_green, canary, rolling
from relay.errors import RolledBack
from relay.manifest import parse_manifest
from relay.platforms.kubernetes import kube_kept_versions
from relay.registry import ImageRef
from relay.settings import relay_home
from relay.specs import deploy_spec
from tasks.deploy import switch_back

pytestmark = pytest.mark.stack


def image(tag: str, name: str = "orders") -> str:
    return f"127.0.0.1:5000/shop/{name}@sha256:{hashlib.sha256(tag.encode()).hexdigest()}"


@pytest.fixture
def namespace(control_plane: Any) -> Iterator[str]:
    api = control_plane.api_client()
    name = f"relay-flow-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
    api.close()


def manifest(kubeconfig: Path, namespace: str) -> Any:
    return parse_manifest(
        {
            "app": "shop",
            "services": {"orders": {"path": "services/orders", "port": 8002}},
            "environments": {
                "prod": {
                    "platform": "kubernetes",
                    "namespace": namespace,
                    "secrets": None,
                    "strategy": "canary",
                    "canary_steps": [50, 100],
                    "analysis": {"interval_seconds": 1, "on_inconclusive": "continue"},
                    "kubernetes": {"kubeconfig": str(kubeconfig), "progress_deadline_seconds": 5},
                }
            },
        },
        "relay.yaml",
    )


def test_rolling_then_canary_flows_on_kubernetes(control_plane: Any, namespace: str) -> None:
    m = manifest(control_plane.kubeconfig, namespace)
    env = m.environments["prod"]
    first = deploy_spec(m, "prod", "orders", ImageRef.parse(image("v1")), "c1", "t1")
    second = deploy_spec(m, "prod", "orders", ImageRef.parse(image("v2")), "c2", "t2")

    asyncio.run(rolling(DockerHost(), first, env, False))
    result = asyncio.run(canary(DockerHost(), second, env, True))

    assert result.image == image("v2") and result.previous == image("v1")
    api = control_plane.api_client()
    try:
        apps = client.AppsV1Api(api)
        stable = apps.read_namespaced_deployment("orders", namespace)
        assert stable.spec.template.spec.containers[0].image == image("v2")
        assert apps.read_namespaced_deployment("orders-canary", namespace).spec.replicas == 0
        route = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "httproutes", "orders"
        )
        weights = [ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"]]
        assert weights == [100, 0]
    finally:
        api.close()


def test_a_never_ready_canary_is_rolled_back_by_the_flow(
    control_plane: Any, namespace: str
) -> None:
    m = manifest(control_plane.kubeconfig, namespace)
    env = m.environments["prod"]
    asyncio.run(
        rolling(
            DockerHost(),
            deploy_spec(m, "prod", "orders", ImageRef.parse(image("v1")), "c1", "t1"),
            env,
            False,
        )
    )
    bad = deploy_spec(
        m, "prod", "orders", ImageRef.parse(image("v2", f"orders-{NEVER_READY}")), "c2", "t2"
    )

    with pytest.raises(RolledBack, match="ProgressDeadlineExceeded"):
        asyncio.run(canary(DockerHost(), bad, env, True))

    api = control_plane.api_client()
    try:
        stable = client.AppsV1Api(api).read_namespaced_deployment("orders", namespace)
        assert stable.spec.template.spec.containers[0].image == image("v1")
        assert stable.status.available_replicas == 2
    finally:
        api.close()


def test_blue_green_keeps_the_previous_color_and_a_rollback_switches_back_to_it(
    control_plane: Any, namespace: str
) -> None:
    """The deploy ends at the switch (it does not wait out `keep_previous_seconds`), and the
    rollback's switch-back task points the Service at the kept color, starting no pod."""
    m = manifest(control_plane.kubeconfig, namespace)
    env = m.environments["prod"].model_copy(
        update={"strategy": "blue_green", "keep_previous_seconds": 600}
    )
    first = replace(
        deploy_spec(m, "prod", "orders", ImageRef.parse(image("v1")), "c1", "t1"),
        strategy="blue_green",
    )
    second = replace(first, image=ImageRef.parse(image("v2")), commit="c2", tree="t2")
    asyncio.run(blue_green(DockerHost(), first, env, False, None))
    started = time.monotonic()
    asyncio.run(blue_green(DockerHost(), second, env, True, None))
    assert time.monotonic() - started < 120, "the deploy waited out the kept window"
    [note] = [k for k in kube_kept_versions(relay_home()) if k.namespace == namespace]
    assert (note.track, note.image) == ("blue", image("v1"))

    result = switch_back(DockerHost(), first)

    assert result is not None and (result.image, result.previous) == (image("v1"), image("v2"))
    api = control_plane.api_client()
    try:
        service = client.CoreV1Api(api).read_namespaced_service("orders", namespace)
        assert service.spec.selector["relay.dev/track"] == "blue"
        apps = client.AppsV1Api(api)
        assert apps.read_namespaced_deployment("orders-green", namespace).spec.replicas == 0
    finally:
        api.close()
    assert not [k for k in kube_kept_versions(relay_home()) if k.namespace == namespace]
