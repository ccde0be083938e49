"""The payments process itself: starts from PORT, answers, stops promptly on SIGTERM."""

import signal
import time
from http.client import HTTPConnection
from urllib.parse import urlsplit


def test_starts_on_port_and_stops_on_sigterm(spawn_service, http):
    service = spawn_service({})
    assert http("GET", service.url + "/version").body == {
        "service": "payments",
        "version": "unknown",
    }
    # An idle keep-alive client (as HAProxy keeps to its backends) must not hold up the exit.
    parts = urlsplit(service.url)
    idle = HTTPConnection(parts.hostname, parts.port, timeout=5)
    idle.request("GET", "/healthz")
    idle.getresponse().read()
    try:
        started = time.monotonic()
        service.proc.send_signal(signal.SIGTERM)
        assert service.proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 2
    finally:
        idle.close()
