"""Deploy stage: the steps strategies are made of, each one task on the environment's platform
(docker or kubernetes: `_platform` picks it from the spec's type, see `relay.platforms`).

None of them is retried: a failed step has already left the previous version serving (or put
it back), and the reason (a crash, a failing health check) would not change on a second try.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect_docker import DockerHost

from blocks.aws import aws_client
from blocks.kubernetes import cluster_client
from relay.analysis import Readings, ServerCounters
from relay.aws.secrets import read_values
from relay.errors import RelayError, StageFailed, TerminalError
from relay.manifest import Manifest
from relay.platforms import AnyRollout, Current, Platform, Spec
from relay.platforms.docker import DeployResult, DeploySpec, DockerPlatform, Kept, kept_versions
from relay.platforms.kubernetes import (
    ClusterAccess,
    KubeKept,
    KubernetesPlatform,
    KubeRollout,
    KubeSpec,
    forget_kept,
    kube_kept_versions,
    note_kept,
)
from relay.settings import platform_home
from relay.specs import cluster_access
from relay.traffic import TrafficRouter, make_router
from tasks.support.retry import on_transient
from tasks.support.tracing import platform_span


def _router(spec: DeploySpec) -> TrafficRouter:
    return make_router(
        "haproxy",
        name=f"{spec.app}-{spec.environment}",
        home=platform_home(),
        labels={"app": spec.app, "environment": spec.environment},
    )


@contextmanager
def _platform(docker_host: DockerHost, spec: Spec) -> Iterator[Platform]:
    """The spec's platform, with a client opened for this task only."""
    if isinstance(spec, KubeSpec):
        with _kubernetes(spec.access) as kubernetes:
            yield kubernetes
        return
    with docker_host.get_client() as client:
        yield DockerPlatform(client, _router(spec), platform_home())


@contextmanager
def _kubernetes(access: ClusterAccess) -> Iterator[KubernetesPlatform]:
    """The cluster's platform, with a client opened for this task only."""
    api = cluster_client(access)
    try:
        yield KubernetesPlatform(api)
    finally:
        api.close()


@contextmanager
def _shift(rollout: AnyRollout, percent: int, rollback: bool = False) -> Iterator[None]:
    """A `traffic shift` span: the router call, with where traffic goes (see tasks.support)."""
    spec = rollout.spec
    with platform_span(
        "traffic shift",
        app=spec.app,
        service=spec.service,
        environment=spec.environment,
        digest=spec.image.digest,
        traffic_weight=percent,
        traffic_rollback=rollback,
    ):
        yield


@task(name="current-version", cache_policy=NO_CACHE)
def current_version(docker_host: DockerHost, spec: Spec) -> Current | None:
    """What serves now, read from the engine or the cluster; None on a first deploy."""
    with _platform(docker_host, spec) as platform:
        return platform.current(spec)  # type: ignore[no-any-return]


@task(name="serving-already", cache_policy=NO_CACHE)
def serving_already(docker_host: DockerHost, spec: Spec) -> Current | None:
    """The active version when it is exactly this image and healthy: nothing to deploy."""
    with _platform(docker_host, spec) as platform:
        return platform.serves(spec)  # type: ignore[no-any-return]


@task(name="check-cluster", cache_policy=NO_CACHE, **on_transient(3, [1, 3, 10]))
def check_cluster(manifest: Manifest, environment: str) -> None:
    """A kubernetes environment's cluster answers and its namespace exists: checked before
    anything is built, as its configuration is (a docker environment needs nothing here)."""
    settings = manifest.environments[environment]
    if settings.platform != "kubernetes":
        return
    namespace = settings.namespace or f"{manifest.app}-{environment}"
    where = f"{manifest.source}: environments.{environment}"
    try:
        api = cluster_client(cluster_access(manifest, environment))
    except RelayError:
        raise
    except Exception as exc:  # a kubeconfig that is not there, an unknown context...
        raise TerminalError(f"{where}.kubernetes: cannot reach the cluster: {exc}") from exc
    try:
        KubernetesPlatform(api).check_namespace(namespace, f"{where}.namespace")
    except RelayError:
        raise
    except Exception as exc:  # discovery refused (401: an identity the cluster does not map)
        raise TerminalError(
            f"{where}.kubernetes: the cluster did not let the worker in: {exc}; map the "
            "worker's identity to Kubernetes permissions (on EKS an access entry for its role) "
            "that may get its namespace and manage Relay's objects there (see the README)"
        ) from exc
    finally:
        api.close()


@task(name="start-new-version", cache_policy=NO_CACHE)
def start_new_version(docker_host: DockerHost, spec: Spec) -> AnyRollout:
    """The configuration values are read here, at the last moment, and go straight into the
    container: they never pass through a flow's parameters or a task's result."""
    values = read_values(aws_client("secretsmanager"), spec.config) if spec.config else {}
    with _platform(docker_host, spec) as platform:
        rollout: AnyRollout = platform.start_new(spec, values)
    get_run_logger().info(
        "%s %s is healthy in slot %s (no traffic yet)", spec.service, spec.image, rollout.slot
    )
    if isinstance(rollout, KubeRollout):
        get_run_logger().info("%s: traffic moves by %s", spec.service, rollout.traffic)
    return rollout


# The run's name carries the weight: the UI's graph and `relay`'s progress show it as it moves.
@task(name="set-canary-weight", task_run_name="set-weight-{percent}%", cache_policy=NO_CACHE)
def set_canary_weight(docker_host: DockerHost, rollout: AnyRollout, percent: int) -> None:
    with _platform(docker_host, rollout.spec) as platform, _shift(rollout, percent):
        real = platform.set_canary_weight(rollout, percent)
    get_run_logger().info("%s: %s%% of traffic to the new version", rollout.spec.service, percent)
    if isinstance(rollout, KubeRollout):
        get_run_logger().info(
            "%s: canary by %s: %s%% asked, about %s%% given",
            rollout.spec.service,
            rollout.traffic,
            percent,
            real,
        )


@task(name="switch-traffic", cache_policy=NO_CACHE)
def switch_traffic(docker_host: DockerHost, rollout: AnyRollout) -> None:
    with _platform(docker_host, rollout.spec) as platform, _shift(rollout, 100):
        platform.switch(rollout)
    get_run_logger().info("%s: all traffic to %s", rollout.spec.service, rollout.spec.image)


@task(name="stop-previous-version", cache_policy=NO_CACHE)
def stop_previous_version(docker_host: DockerHost, rollout: AnyRollout) -> None:
    with _platform(docker_host, rollout.spec) as platform:
        platform.stop_previous(rollout)


@task(name="keep-previous-version", cache_policy=NO_CACHE)
def keep_previous_version(docker_host: DockerHost, rollout: AnyRollout, seconds: float) -> None:
    """Blue/green: the previous version stays up, without traffic, for `seconds`, and the
    deploy ends (its lock freed); on kubernetes the previous color keeps its pods, marked as
    kept. Noted under RELAY_HOME for the scheduled stop."""
    kept: Kept | KubeKept | None
    if isinstance(rollout, KubeRollout):
        with _kubernetes(rollout.spec.access) as kubernetes:
            kept = kubernetes.keep_previous(rollout, seconds)
        if kept is not None:
            note_kept(platform_home(), kept)
    else:
        with _platform(docker_host, rollout.spec) as platform:
            kept = platform.keep_previous(rollout, seconds)
    if kept is not None:
        get_run_logger().info(
            "%s: the previous version %s keeps running without traffic until %s UTC; "
            "`relay rollback` switches back to it instantly until then",
            rollout.spec.service,
            kept.image,
            kept.until[11:19],
        )


@task(name="switch-back", cache_policy=NO_CACHE)
def switch_back(docker_host: DockerHost, spec: Spec) -> DeployResult | None:
    """Traffic back to the kept previous version when it is `spec.image`, its window is open
    and it is healthy (docker: its health check; kubernetes: available pods), starting
    nothing; None otherwise, for the caller to deploy the image again."""
    started = time.perf_counter()
    if isinstance(spec, KubeSpec):
        result = _switch_back_kubernetes(spec)
    else:
        result = _switch_back_docker(docker_host, spec)
    if result is not None:
        get_run_logger().info(
            "%s: switched back to the kept %s in %.3f s (no container started)",
            spec.service,
            result.image,
            time.perf_counter() - started,
        )
    return result


def _switch_back_docker(docker_host: DockerHost, spec: DeploySpec) -> DeployResult | None:
    with _platform(docker_host, spec) as platform:
        kept = platform.kept(spec.app, spec.environment, spec.service)
        if kept is None or kept.image != str(spec.image):
            return None
        try:
            result: DeployResult = platform.switch_back(spec, kept)
        except StageFailed as exc:  # the kept version is unwell: deploy the image again instead
            get_run_logger().warning("%s; deploying %s again instead", exc, spec.image)
            return None
    return result


def _switch_back_kubernetes(spec: KubeSpec) -> DeployResult | None:
    with _kubernetes(spec.access) as kubernetes:
        kept = kubernetes.kept(spec)
        if kept is None or kept.image != str(spec.image):
            return None
        result = kubernetes.switch_back(spec, kept)
    forget_kept(platform_home(), spec.app, spec.environment, spec.service)
    return result


@task(name="stop-expired-versions", cache_policy=NO_CACHE)
def stop_expired_versions(docker_host: DockerHost) -> list[str]:
    """Stop every kept previous version whose window has closed; their container (docker) or
    Deployment (kubernetes) names. A cluster that cannot be reached keeps its note for the
    next run."""
    stopped = []
    with docker_host.get_client() as client:
        for kept in kept_versions(platform_home()):
            if not kept.expired:
                continue
            router = make_router(
                "haproxy", name=f"{kept.app}-{kept.environment}", home=platform_home()
            )
            if DockerPlatform(client, router, platform_home()).stop_kept(kept):
                stopped.append(kept.container)
    for note in kube_kept_versions(platform_home()):
        if not note.expired:
            continue
        try:
            with _kubernetes(note.cluster) as kubernetes:
                if kubernetes.stop_kept(note):
                    stopped.append(f"{note.namespace}/{note.service}-{note.track}")
        except Exception as exc:  # noqa: BLE001 - an unreachable cluster must not stop the others
            get_run_logger().warning(
                "the kept %s of %s in %s stays noted: %s",
                note.track,
                note.service,
                note.environment,
                exc,
            )
            continue
        forget_kept(platform_home(), note.app, note.environment, note.service, only=note)
    if stopped:
        get_run_logger().info("stopped the kept previous versions %s", ", ".join(stopped))
    return stopped


@task(name="abort-rollout", cache_policy=NO_CACHE)
def abort_rollout(docker_host: DockerHost, rollout: AnyRollout) -> None:
    """All traffic back to the stable version, then the new one removed."""
    with _platform(docker_host, rollout.spec) as platform, _shift(rollout, 0, rollback=True):
        platform.abort(rollout)
    stable = rollout.stable.image if rollout.stable else "nothing (first deploy)"
    get_run_logger().warning("%s: rolled back; %s serves", rollout.spec.service, stable)


@task(name="read-slot-counters", cache_policy=NO_CACHE)
def read_slot_counters(rollout: AnyRollout) -> Readings | None:
    """HAProxy's counters of both versions' slots, read at once so that they cover the same
    seconds; None on kubernetes, which has no router counters (its canaries are judged by
    CloudWatch or Prometheus metrics, `analysis.metrics`, or by alarms)."""
    if isinstance(rollout, KubeRollout):
        return None
    rows = _router(rollout.spec).stats(rollout.spec.service)
    stable = rows.get(rollout.stable.slot) if rollout.stable is not None else None
    return Readings(
        canary=ServerCounters.from_haproxy(rows[rollout.slot]),
        stable=ServerCounters.from_haproxy(stable) if stable is not None else None,
    )
