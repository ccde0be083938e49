"""Against the running orders service (ORDERS_URL) and its real inventory and payments.

Skipped when ORDERS_URL is not set; the stock checks also need INVENTORY_URL. Stock is shared
with the rest of the environment, so they compare before/after, never absolute numbers.
"""

import pytest

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
WIDGET_PRICE_CENTS = 1999


@pytest.fixture
def orders(service_url):
    return service_url("orders")


@pytest.fixture
def inventory(service_url):
    return service_url("inventory")


def stock(http, inventory, sku):
    response = http("GET", f"{inventory}/stock/{sku}")
    assert response.status == 200, response.body
    return response.body["available"]


def test_healthz(http, orders):
    response = http("GET", f"{orders}/healthz")
    assert (response.status, response.body) == (200, {"status": "ok"})


def test_version(http, orders):
    response = http("GET", f"{orders}/version")
    assert response.status == 200 and response.body["service"] == "orders"


def test_order_is_placed_and_takes_stock(http, orders, inventory):
    before = stock(http, inventory, "widget")
    response = http(
        "POST",
        f"{orders}/orders",
        {"sku": "widget", "quantity": 2, "card": GOOD_CARD},
        headers={"X-Request-Id": "it-orders-1"},
    )
    assert response.status == 201, response.body
    order = response.body
    assert order["sku"] == "widget" and order["quantity"] == 2
    assert order["amount_cents"] == 2 * WIDGET_PRICE_CENTS
    assert order["order_id"] and order["payment_id"].startswith("pay_")
    assert response.headers["X-Request-Id"] == "it-orders-1"
    assert stock(http, inventory, "widget") == before - 2

    read_back = http("GET", f"{orders}/orders/{order['order_id']}")
    assert (read_back.status, read_back.body) == (200, order)


def test_declined_card_is_402_and_keeps_stock(http, orders, inventory):
    before = stock(http, inventory, "widget")
    response = http(
        "POST", f"{orders}/orders", {"sku": "widget", "quantity": 1, "card": DECLINED_CARD}
    )
    assert response.status == 402, response.body
    assert "declined" in response.body["error"]
    assert stock(http, inventory, "widget") == before


def test_unknown_sku_is_404(http, orders):
    response = http(
        "POST", f"{orders}/orders", {"sku": "sprocket", "quantity": 1, "card": GOOD_CARD}
    )
    assert response.status == 404 and "unknown sku" in response.body["error"]


def test_out_of_stock_is_409(http, orders):
    response = http("POST", f"{orders}/orders", {"sku": "gizmo", "quantity": 1, "card": GOOD_CARD})
    assert response.status == 409 and "insufficient" in response.body["error"]


def test_malformed_card_is_400_and_keeps_stock(http, orders, inventory):
    before = stock(http, inventory, "widget")
    response = http("POST", f"{orders}/orders", {"sku": "widget", "quantity": 1, "card": "12"})
    assert response.status == 400 and "card" in response.body["error"]
    assert stock(http, inventory, "widget") == before


@pytest.mark.parametrize(
    "raw", [b"nope", b'{"sku": "widget", "quantity": 1}', b'{"sku": "widget", "quantity": -1}']
)
def test_bad_body_is_400(http, orders, raw):
    response = http("POST", f"{orders}/orders", raw=raw)
    assert response.status == 400 and "error" in response.body


def test_unknown_order_is_404(http, orders):
    response = http("GET", f"{orders}/orders/ord_doesnotexist")
    assert response.status == 404 and "error" in response.body
