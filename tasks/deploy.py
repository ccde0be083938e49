"""Deploy stage: the steps strategies are made of, each one task on the docker platform.

None of them is retried: a failed step has already left the previous version serving (or put
it back), and the reason (a crash, a failing health check) would not change on a second try.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect_docker import DockerHost

from blocks.aws import aws_client
from relay.analysis import ServerCounters
from relay.aws.secrets import read_values
from relay.platforms.docker import DeploySpec, DockerPlatform, Rollout, Running
from relay.settings import relay_home
from relay.traffic import TrafficRouter, make_router
from tasks.tracing import platform_span


def _router(spec: DeploySpec) -> TrafficRouter:
    return make_router("haproxy", f"{spec.app}-{spec.environment}", relay_home())


@contextmanager
def _platform(docker_host: DockerHost, spec: DeploySpec) -> Iterator[DockerPlatform]:
    with docker_host.get_client() as client:
        yield DockerPlatform(client, _router(spec))


@contextmanager
def _shift(rollout: Rollout, percent: int, rollback: bool = False) -> Iterator[None]:
    """A `traffic shift` span: the router call, with where traffic goes (`tasks.tracing`)."""
    spec = rollout.spec
    with platform_span(
        "traffic shift",
        app=spec.app,
        service=spec.service,
        environment=spec.environment,
        digest=spec.image.rpartition("@")[2],
        traffic_weight=percent,
        traffic_rollback=rollback,
    ):
        yield


@task(name="current-version", cache_policy=NO_CACHE)
def current_version(docker_host: DockerHost, spec: DeploySpec) -> Running | None:
    """What serves now, read from the engine; None on a first deploy."""
    with _platform(docker_host, spec) as platform:
        return platform.active(spec.app, spec.environment, spec.service)


@task(name="serving-already", cache_policy=NO_CACHE)
def serving_already(docker_host: DockerHost, spec: DeploySpec) -> Running | None:
    """The active version when it is exactly this image and healthy: nothing to deploy."""
    with _platform(docker_host, spec) as platform:
        return platform.serves(spec)


@task(name="start-new-version", cache_policy=NO_CACHE)
def start_new_version(docker_host: DockerHost, spec: DeploySpec) -> Rollout:
    """The configuration values are read here, at the last moment, and go straight into the
    container: they never pass through a flow's parameters or a task's result."""
    values = read_values(aws_client("secretsmanager"), spec.config) if spec.config else {}
    with _platform(docker_host, spec) as platform:
        rollout = platform.start_new(spec, values)
    get_run_logger().info(
        "%s %s is healthy in slot %s (no traffic yet)", spec.service, spec.image, rollout.slot
    )
    return rollout


@task(name="set-canary-weight", cache_policy=NO_CACHE)
def set_canary_weight(docker_host: DockerHost, rollout: Rollout, percent: int) -> None:
    with _platform(docker_host, rollout.spec) as platform, _shift(rollout, percent):
        platform.set_canary_weight(rollout, percent)
    get_run_logger().info("%s: %s%% of traffic to the new version", rollout.spec.service, percent)


@task(name="switch-traffic", cache_policy=NO_CACHE)
def switch_traffic(docker_host: DockerHost, rollout: Rollout) -> None:
    with _platform(docker_host, rollout.spec) as platform, _shift(rollout, 100):
        platform.switch(rollout)
    get_run_logger().info("%s: all traffic to %s", rollout.spec.service, rollout.spec.image)


@task(name="stop-previous-version", cache_policy=NO_CACHE)
def stop_previous_version(docker_host: DockerHost, rollout: Rollout) -> None:
    with _platform(docker_host, rollout.spec) as platform:
        platform.stop_previous(rollout)


@task(name="abort-rollout", cache_policy=NO_CACHE)
def abort_rollout(docker_host: DockerHost, rollout: Rollout) -> None:
    """All traffic back to the stable version, then the new one removed."""
    with _platform(docker_host, rollout.spec) as platform, _shift(rollout, 0, rollback=True):
        platform.abort(rollout)
    stable = rollout.stable.image if rollout.stable else "nothing (first deploy)"
    get_run_logger().warning("%s: rolled back; %s serves", rollout.spec.service, stable)


@task(name="read-slot-counters", cache_policy=NO_CACHE)
def read_slot_counters(rollout: Rollout) -> ServerCounters:
    """HAProxy's counters of the new version's slot."""
    row = _router(rollout.spec).stats(rollout.spec.service)[rollout.slot]
    return ServerCounters.from_haproxy(row)
