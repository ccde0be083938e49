"""HAProxy as the traffic router of the docker platform.

One HAProxy process per application environment (e.g. `shop-dev`) listens on each service's
public port and balances between two slots, `blue` and `green`, by weight. Weights change through
the runtime API (admin socket), effective at once and without a reload. Adding a service needs a
new frontend, which needs a reload: the server state is saved first and loaded back
(`server-state-file`), because a reload otherwise resets weights to the configuration's.

Every process also serves HAProxy's built-in Prometheus exporter on a port of its own
(127.0.0.1, chosen once and kept), and names it in a scrape-target file
(`relay.settings.prometheus_targets`), so a Prometheus can judge canaries by PromQL.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from relay.errors import RelayError, TerminalError
from relay.settings import prometheus_targets, router_image
from relay.traffic.haproxy_container import RouterContainer

SLOTS = ("blue", "green")


@dataclass(frozen=True)
class Route:
    """A service's public port and its two slot ports."""

    service: str
    public_port: int
    slots: dict[str, int]
    health: str = "/healthz"


def _backend(service: str) -> str:
    return f"be_{service}"


def render_config(
    routes: list[Route], socket_path: Path, state_file: Path, metrics_port: int | None = None
) -> str:
    lines = [
        "global",
        f"    stats socket {socket_path} mode 600 level admin",
        f"    server-state-file {state_file}",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        # A request the server never answered (its container died, or refused the
        # connection) is sent again, to the other slot; only idempotent methods, so a
        # POST that may have been processed is never sent twice. Not `response-timeout`:
        # beside `empty-response` (HAProxy 2.6) it made every answer of a server that writes
        # headers and body separately wait ~40 ms for a delayed ACK.
        "    option redispatch 1",
        "    retries 2",
        "    retry-on conn-failure empty-response",
        "    load-server-state-from-file global",
    ]
    if metrics_port is not None:
        lines += [
            "frontend relay_metrics",
            f"    bind 127.0.0.1:{metrics_port}",
            "    http-request use-service prometheus-exporter if { path /metrics }",
            "    http-request return status 404",
            "    no log",
        ]
    for route in sorted(routes, key=lambda r: r.service):
        lines += [
            f"frontend fe_{route.service}",
            f"    bind 127.0.0.1:{route.public_port}",
            f"    default_backend {_backend(route.service)}",
            f"backend {_backend(route.service)}",
            "    balance roundrobin",
            "    http-request disable-l7-retry unless METH_GET || METH_HEAD || METH_OPTIONS",
            f"    option httpchk GET {route.health}",
            "    http-check expect status 200",
        ]
        for slot in SLOTS:
            port = route.slots[slot]
            lines.append(
                f"    server {slot} 127.0.0.1:{port} weight 0 check inter 1s fall 2 rise 1"
            )
    return "\n".join(lines) + "\n"


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# HAProxy refuses a `stats socket` path longer than this (sun_path minus its own margin).
SOCKET_PATH_MAX = 97


class HAProxyRouter:
    type = "haproxy"

    def __init__(
        self,
        name: str,
        home: Path,
        haproxy: str = "haproxy",
        labels: dict[str, str] | None = None,
        image: str | None = None,
    ) -> None:
        self.name = name
        # Prometheus target labels; `router` (the name) always, `app` and `environment` when
        # the caller knows them (a name such as 'my-app-dev' cannot be split back).
        self.labels = {"router": name, **(labels or {})}
        self.dir = home / "haproxy" / name
        self.pidfile = home / "run" / f"haproxy-{name}.pid"
        self.haproxy = haproxy
        self.config = self.dir / "haproxy.cfg"
        self.socket_path = self.dir / "admin.sock"
        if len(str(self.socket_path)) > SOCKET_PATH_MAX:
            raise TerminalError(
                f"HAProxy's admin socket {self.socket_path} would be {len(str(self.socket_path))} "
                f"characters, above the {SOCKET_PATH_MAX} a Unix socket path may have; use a "
                "shorter RELAY_HOME (such as /tmp/relay) or a shorter app or environment name"
            )
        self.state_file = self.dir / "server-state"
        self.routes_file = self.dir / "routes.json"
        self.metrics_port_file = self.dir / "metrics-port"
        self.target_file = prometheus_targets(home) / f"{name}.json"
        # A container on the engine when an image is set (RELAY_ROUTER_IMAGE), so that a
        # worker running in a container can end without taking the router with it.
        image = image or router_image()
        self.container = RouterContainer(name, self.dir, image) if image else None

    # -- routes and the process ---------------------------------------------------------------

    def routes(self) -> dict[str, Route]:
        if not self.routes_file.exists():
            return {}
        raw = json.loads(self.routes_file.read_text())
        return {name: Route(**value) for name, value in raw.items()}

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time per environment: several pipelines (processes) share it, and a
        weight set between saving the state and the new process loading it would be lost."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def ensure_route(self, route: Route) -> None:
        """Make sure HAProxy serves `route`; reloads only when the configuration changes.

        The route list is saved only once HAProxy runs with it; a failed reload puts the
        previous configuration back, so the next attempt tries again.
        """
        with self._locked():
            routes = self.routes()
            running = self.running()
            if routes.get(route.service) == route and running and self.target_file.exists():
                return
            routes[route.service] = route
            self.pidfile.parent.mkdir(parents=True, exist_ok=True)
            candidate = self.config.with_suffix(".new")
            candidate.write_text(
                render_config(
                    list(routes.values()),
                    self.socket_path,
                    self.state_file,
                    self.metrics_port(running=running),
                )
            )
            self._check(candidate)
            previous = self.config.read_text() if self.config.exists() else None
            candidate.replace(self.config)
            try:
                if running:
                    self._save_state()
                self._start(reload=running)
            except RelayError:
                if previous is not None:
                    self.config.write_text(previous)
                raise
            self.routes_file.write_text(
                json.dumps({k: asdict(v) for k, v in routes.items()}, indent=2)
            )
            self._write_target()

    def metrics_port(self, running: bool = True) -> int:
        """The port of this process's Prometheus exporter: chosen free once, then kept, so
        Prometheus' series of this environment continue across reloads. When HAProxy is not
        `running` and something else took the port meanwhile (after a reboot, say), another
        is chosen (the scrape target follows)."""
        try:
            port = int(self.metrics_port_file.read_text())
        except (OSError, ValueError):
            port = 0
        if port and (running or _free(port)):
            return port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        self.metrics_port_file.write_text(str(port))
        return port

    def _write_target(self) -> None:
        """Name this process's exporter to Prometheus (file service discovery); written
        whole, then renamed, because Prometheus watches the directory and reads at once."""
        target = [{"targets": [f"127.0.0.1:{self.metrics_port()}"], "labels": self.labels}]
        self.target_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.target_file.with_suffix(".partial")
        partial.write_text(json.dumps(target, indent=2))
        partial.replace(self.target_file)

    def pid(self) -> int | None:
        """The running HAProxy's PID, if the pidfile names a live haproxy process."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        return pid if b"haproxy" in cmdline and str(self.config).encode() in cmdline else None

    def running(self) -> bool:
        """Whether this environment's HAProxy runs (its container, or its process)."""
        if self.container is not None:
            return self.container.running()
        return self.pid() is not None

    def _check(self, config: Path) -> None:
        if self.container is not None:
            self.container.check(config)
            return
        argv = [self.haproxy, "-c", "-f", str(config)]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True)
        except FileNotFoundError:
            raise TerminalError(
                f"HAProxy {self.name}: {self.haproxy!r} is not installed on this worker; install "
                "Debian's haproxy, or set RELAY_ROUTER_IMAGE (such as haproxy:2.6) to run routers "
                "as containers on the Docker engine, which a worker in a container needs"
            ) from None
        if proc.returncode != 0:
            alerts = [line for line in proc.stderr.splitlines() if "ALERT" in line]
            reason = "\n".join(alerts) or proc.stderr.strip()
            raise RelayError(f"HAProxy rejected the generated {config}:\n{reason}")

    def _start(self, reload: bool) -> None:
        """Start HAProxy on the current configuration, or reload it; return once the admin
        socket answers from the new process."""
        self.state_file.touch()
        if self.container is not None:
            before = self._serving_pid() if reload else None
            if reload:
                self.container.reload()
            else:
                self.container.start(self.config)

            def replaced() -> bool:
                serving = self._serving_pid()
                return serving is not None and serving != before

            self._wait_answering(replaced)
            return
        old = self.pid()
        extra = ["-sf", str(old)] if reload and old is not None else []
        proc = subprocess.run(
            [self.haproxy, "-D", "-f", str(self.config), "-p", str(self.pidfile), *extra],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RelayError(f"HAProxy {self.name} did not start: {proc.stderr.strip()}")

        def started() -> bool:
            pid = self.pid()
            if pid is None or pid == old or not self.socket_path.exists():
                return False
            self.command("show info")
            return True

        self._wait_answering(started)

    def _serving_pid(self) -> str | None:
        """The PID of the HAProxy process that answers on the admin socket, if one does."""
        try:
            info = self.command("show info")
        except RelayError:
            return None
        return next((line.split(":", 1)[1].strip() for line in info.splitlines()
                     if line.startswith("Pid:")), None)  # fmt: skip

    def _wait_answering(self, answered: Callable[[], object]) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if answered():
                    return
            except RelayError:
                pass
            time.sleep(0.05)
        logs = self.container.logs() if self.container is not None else ""
        raise RelayError(
            f"HAProxy {self.name} started but its admin socket never answered"
            + (f"; its last lines:\n{logs}" if logs else "")
        )

    def _save_state(self) -> None:
        self.state_file.write_text(self.command("show servers state"))

    def stop(self) -> None:
        if self.container is not None:
            self.container.stop()
            return
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)

    # -- runtime API ----------------------------------------------------------------------------

    def command(self, line: str) -> str:
        """One runtime API command over the admin socket (a connection per command)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(str(self.socket_path))
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise RelayError(
                f"HAProxy {self.name} does not answer on {self.socket_path} ({exc}); "
                "a deploy to this environment starts it again"
            ) from exc
        return b"".join(chunks).decode()

    def set_weight(self, service: str, weights: dict[str, int]) -> None:
        """Set slot weights (0-256) at once; unknown slots are an error, not ignored."""
        unknown = sorted(set(weights) - set(SLOTS))
        if unknown:
            raise ValueError(f"slot {unknown[0]!r} is not one of {', '.join(SLOTS)}")
        with self._locked():
            for slot, weight in weights.items():
                self._set_one(service, slot, weight)

    def _set_one(self, service: str, slot: str, weight: int) -> None:
        reply = self.command(f"set weight {_backend(service)}/{slot} {weight}").strip()
        if reply:
            raise RelayError(f"HAProxy refused weight {weight} for {service}/{slot}: {reply}")

    def mark_healthy(self, service: str, slot: str) -> None:
        """Tell HAProxy a slot is up now (Relay has just checked it), instead of waiting a check."""
        self.command(f"set server {_backend(service)}/{slot} health up")

    def weights(self, service: str) -> dict[str, int]:
        result = {}
        for slot in SLOTS:
            reply = self.command(f"get weight {_backend(service)}/{slot}").strip()
            try:
                result[slot] = int(reply.split()[0])
            except (ValueError, IndexError):
                raise RelayError(f"HAProxy has no route for {service}: {reply}") from None
        return result

    def stats(self, service: str) -> dict[str, dict[str, str]]:
        """Each slot's row of `show stat` (CSV): HAProxy's own per-server counters."""
        lines = self.command(f"show stat {_backend(service)} 4 -1").splitlines()
        if not lines or not lines[0].startswith("# "):
            raise RelayError(f"HAProxy gave no statistics for {service}: {lines[:1]}")
        header = lines[0][2:].split(",")
        rows = (dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line)
        return {row["svname"]: row for row in rows if row.get("svname") in SLOTS}

    def verify_weight(self, service: str, weights: dict[str, int]) -> bool | None:
        current = self.weights(service)
        return all(current.get(slot) == weight for slot, weight in weights.items())

    def remove_managed_routes(self) -> None:
        """Stop serving every route of this environment (the process and its files go)."""
        self.stop()
        for path in (self.target_file, self.routes_file, self.config, self.state_file):
            path.unlink(missing_ok=True)
