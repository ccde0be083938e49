"""A request through the gateway that crosses every service: gateway -> orders -> inventory,
payments. Run from examples/shop with GATEWAY_URL (and ORDERS_URL, INVENTORY_URL, PAYMENTS_URL
for the per-service checks); RELAY_EXPECTED_VERSION, when set, is the version every service must
report."""

import os
import re
import time

import pytest

SERVICES = ("gateway", "orders", "inventory", "payments")
GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
REQUEST_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def gateway(service_url):
    return service_url("gateway")


def read_order(http, gateway, order_id, attempts=10):
    """GET an order through the gateway.

    Orders are kept in memory per orders process. While a canary or blue/green switch runs two
    orders processes behind one address, a read can land on the process that did not take the
    order, so a 404 is retried a few times before it counts.
    """
    for _ in range(attempts):
        response = http("GET", f"{gateway}/api/orders/{order_id}")
        if response.status != 404:
            return response
        time.sleep(0.05)
    return response


def test_order_through_the_gateway_and_read_it_back(http, gateway):
    placed = http(
        "POST", f"{gateway}/api/orders", {"sku": "widget", "quantity": 1, "card": GOOD_CARD}
    )
    assert placed.status == 201, placed.body
    assert REQUEST_ID.fullmatch(placed.headers.get("X-Request-Id", ""))
    order = placed.body
    assert order["sku"] == "widget" and order["quantity"] == 1
    assert order["amount_cents"] > 0
    assert order["payment_id"]  # payments took part

    read_back = read_order(http, gateway, order["order_id"])
    assert read_back.status == 200, read_back.body
    assert read_back.body == order
    assert REQUEST_ID.fullmatch(read_back.headers.get("X-Request-Id", ""))


def test_declined_card_comes_back_as_402_and_stock_is_kept(http, gateway):
    inventory = os.environ.get("INVENTORY_URL", "").rstrip("/")
    before = http("GET", f"{inventory}/stock/widget").body["available"] if inventory else None
    response = http(
        "POST", f"{gateway}/api/orders", {"sku": "widget", "quantity": 1, "card": DECLINED_CARD}
    )
    assert response.status == 402, response.body
    assert "declined" in response.body["error"]
    if inventory:
        assert http("GET", f"{inventory}/stock/widget").body["available"] == before


def test_out_of_stock_comes_back_as_409(http, gateway):
    response = http(
        "POST", f"{gateway}/api/orders", {"sku": "gizmo", "quantity": 1, "card": GOOD_CARD}
    )
    assert response.status == 409, response.body


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_is_healthy_and_reports_the_expected_version(http, service_url, service):
    base = service_url(service)
    assert http("GET", f"{base}/healthz").status == 200
    response = http("GET", f"{base}/version")
    assert response.status == 200
    assert response.body["service"] == service
    expected = os.environ.get("RELAY_EXPECTED_VERSION", "").strip()
    if expected:
        assert response.body["version"] == expected, (
            f"{service} runs version {response.body['version']}, expected {expected}"
        )
