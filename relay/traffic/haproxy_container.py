"""One application environment's HAProxy as a container on the Docker engine, instead of a
process on the worker's host: a worker that runs in a container (a `docker` work pool's job)
ends with its flow run, and the router must go on serving.

The router's directory (configuration, admin socket, server state) is a directory of the
engine's host, bind-mounted at the same path, so a worker, the router and HAProxy's own checks
all name the same files. HAProxy runs in master-worker mode: a reload is SIGUSR2 to the
container's master, which starts a worker on the new configuration and lets the old one finish
its connections.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import docker
import docker.errors

from relay.errors import RelayError

LABEL = "relay.router"


class RouterContainer:
    def __init__(self, name: str, directory: Path, image: str) -> None:
        self.name = f"relay-router-{name}"
        self.router = name
        self.directory = directory
        self.image = image

    def _client(self) -> docker.DockerClient:
        return docker.from_env(timeout=60)

    @staticmethod
    def _user() -> str:
        """The worker's own uid:gid: the admin socket HAProxy makes (mode 600) is then the
        worker's to use, and so are the files in the router's directory."""
        return f"{os.getuid()}:{os.getgid()}"

    def _mounts(self) -> dict[str, dict[str, str]]:
        return {str(self.directory): {"bind": str(self.directory), "mode": "rw"}}

    def check(self, config: Path) -> None:
        """`haproxy -c` on `config`, in a throwaway container of the router's image.

        Raises:
            RelayError: HAProxy rejected it (its alerts), or the image cannot run.
        """
        client = self._client()
        try:
            client.containers.run(
                self.image,
                ["haproxy", "-c", "-f", str(config)],
                remove=True,
                network_mode="none",
                user=self._user(),
                volumes=self._mounts(),
                labels={LABEL: self.router},
            )
        except docker.errors.ContainerError as exc:
            stderr = exc.stderr or b""
            text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
            alerts = [line for line in text.splitlines() if "ALERT" in line]
            reason = "\n".join(alerts) or text.strip()
            raise RelayError(f"HAProxy rejected the generated {config}:\n{reason}") from exc
        except docker.errors.DockerException as exc:
            raise RelayError(
                f"HAProxy {self.router}: cannot run the router image {self.image}: {exc}; "
                "set RELAY_ROUTER_IMAGE to an image with haproxy on its PATH"
            ) from exc
        finally:
            client.close()

    def running(self) -> bool:
        client = self._client()
        try:
            return bool(client.containers.get(self.name).status == "running")
        except docker.errors.NotFound:
            return False
        finally:
            client.close()

    def start(self, config: Path) -> None:
        """Start the router on `config`; one left stopped (an engine restart) is replaced."""
        client = self._client()
        try:
            self._remove(client)
            client.containers.run(
                self.image,
                ["haproxy", "-W", "-db", "-f", str(config)],
                name=self.name,
                detach=True,
                network_mode="host",
                user=self._user(),
                volumes=self._mounts(),
                restart_policy={"Name": "always"},  # back after an engine restart
                labels={LABEL: self.router},
            )
        except docker.errors.DockerException as exc:
            raise RelayError(f"HAProxy {self.router} did not start: {exc}") from exc
        finally:
            client.close()

    def reload(self) -> None:
        """Have the master load the configuration again (SIGUSR2)."""
        client = self._client()
        try:
            client.containers.get(self.name).kill(signal="SIGUSR2")
        except docker.errors.DockerException as exc:
            raise RelayError(f"HAProxy {self.router} could not be reloaded: {exc}") from exc
        finally:
            client.close()

    def logs(self) -> str:
        client = self._client()
        try:
            return str(client.containers.get(self.name).logs(tail=20).decode(errors="replace"))
        except docker.errors.DockerException:
            return ""
        finally:
            client.close()

    def stop(self) -> None:
        client = self._client()
        try:
            self._remove(client)
        except docker.errors.DockerException as exc:
            raise RelayError(f"HAProxy {self.router} could not be stopped: {exc}") from exc
        finally:
            client.close()

    def _remove(self, client: docker.DockerClient) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(self.name).remove(force=True)
