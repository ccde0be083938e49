"""Deploy stage: run an image, by digest, in an environment's platform."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect_docker import DockerHost

from relay.platforms.docker import DeployResult, DeploySpec, DockerPlatform
from relay.settings import relay_home
from relay.traffic import make_router


@task(name="deploy-service", cache_policy=NO_CACHE)
def deploy_service(docker_host: DockerHost, spec: DeploySpec) -> DeployResult:
    """Start the new version next to the old, switch traffic when healthy, stop the old.

    Not retried: a failed deploy has already left the previous version serving, and the
    reason (a crash, a failing health check) would not change on a second try.
    """
    router = make_router("haproxy", f"{spec.app}-{spec.environment}", relay_home())
    with docker_host.get_client() as client:
        result = DockerPlatform(client, router).deploy(spec)
    logger = get_run_logger()
    if result.changed:
        logger.info(
            "%s now serves %s on %s (slot %s)", spec.service, spec.image, result.url, result.slot
        )
    else:
        logger.info(
            "%s already serves %s on %s; nothing to do", spec.service, spec.image, result.url
        )
    return result
