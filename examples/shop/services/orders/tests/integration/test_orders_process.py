"""The orders process itself: start-up checks, unreachable dependencies, SIGTERM."""

import signal
import time

ORDER = {"sku": "widget", "quantity": 1, "card": "4242424242424242"}


def test_missing_dependency_urls_exit_2(spawn_service):
    service = spawn_service({"PAYMENTS_URL": "http://127.0.0.1:1"}, wait=False)
    assert service.proc.wait(timeout=10) == 2
    assert "INVENTORY_URL is not set" in service.log()


def test_unreachable_dependency_is_502_but_healthz_stays_ok(spawn_service, closed_url, http):
    service = spawn_service({"INVENTORY_URL": closed_url, "PAYMENTS_URL": closed_url})
    assert http("GET", service.url + "/healthz").status == 200
    response = http("POST", service.url + "/orders", ORDER)
    assert response.status == 502
    assert "inventory unreachable" in response.body["error"]


def test_stops_promptly_on_sigterm(spawn_service, closed_url):
    service = spawn_service({"INVENTORY_URL": closed_url, "PAYMENTS_URL": closed_url})
    started = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 2
