"""Pure logic of the orders service; dependency calls are replaced by a fake (no network)."""

import json

import orders_app as app
import pytest

URLS = {"inventory": "http://inventory.test", "payments": "http://payments.test"}
GOOD = {"sku": "widget", "quantity": 2, "card": "4242424242424242"}


def test_http_contract_of_the_handler():
    assert app.Handler.protocol_version == "HTTP/1.1"
    assert app.Handler.disable_nagle_algorithm is True
    assert app.HOST == "127.0.0.1"
    assert app.DEFAULT_PORT == 8002
    assert app.CALL_TIMEOUT_SECONDS == 2.0


# --- configuration -----------------------------------------------------------------------------


def test_dependency_env_var():
    assert app.dependency_env_var("inventory") == "INVENTORY_URL"
    assert app.dependency_env_var("user-profile") == "USER_PROFILE_URL"


def test_resolve_dependencies_strips_trailing_slash():
    environ = {"INVENTORY_URL": "http://127.0.0.1:18003/", "PAYMENTS_URL": "http://127.0.0.1:18004"}
    assert app.resolve_dependencies(environ, app.DEPENDENCIES) == {
        "inventory": "http://127.0.0.1:18003",
        "payments": "http://127.0.0.1:18004",
    }


def test_resolve_dependencies_names_every_missing_variable():
    with pytest.raises(app.ConfigError) as err:
        app.resolve_dependencies({}, app.DEPENDENCIES)
    assert "INVENTORY_URL" in str(err.value) and "PAYMENTS_URL" in str(err.value)


def test_resolve_dependencies_rejects_non_http_urls():
    environ = {"INVENTORY_URL": "file:///etc/passwd", "PAYMENTS_URL": "127.0.0.1:18004"}
    with pytest.raises(app.ConfigError) as err:
        app.resolve_dependencies(environ, app.DEPENDENCIES)
    assert "INVENTORY_URL must be an http(s) URL" in str(err.value)
    assert "PAYMENTS_URL must be an http(s) URL" in str(err.value)


def test_main_exits_2_without_dependency_urls(monkeypatch, capsys):
    monkeypatch.delenv("INVENTORY_URL", raising=False)
    monkeypatch.setenv("PAYMENTS_URL", "http://127.0.0.1:18004")
    assert app.main() == 2
    assert "INVENTORY_URL is not set" in capsys.readouterr().err


# --- routing and validation --------------------------------------------------------------------


def test_route():
    assert app.route("POST", "/orders") == ("create_order", {})
    assert app.route("GET", "/orders/ord_abc123") == ("get_order", {"order_id": "ord_abc123"})
    assert app.route("GET", "/healthz") == ("healthz", {})
    with pytest.raises(app.HttpError) as err:
        app.route("GET", "/orders")
    assert err.value.status == 405
    with pytest.raises(app.HttpError) as err:
        app.route("GET", "/orders/../etc")
    assert err.value.status == 404


def test_validate_order_accepts_good_body():
    assert app.validate_order(GOOD) == ("widget", 2, "4242424242424242")


@pytest.mark.parametrize(
    "change",
    [
        {"sku": ""},
        {"sku": None},
        {"quantity": 0},
        {"quantity": "1"},
        {"quantity": True},
        {"quantity": app.MAX_QUANTITY + 1},
        {"card": ""},
        {"card": 4242424242424242},
        {"card": "4" * 33},
    ],
)
def test_validate_order_rejects(change):
    with pytest.raises(app.HttpError) as err:
        app.validate_order({**GOOD, **change})
    assert err.value.status == 400


def test_price_cents():
    assert app.price_cents("widget", 1) == 1999
    assert app.price_cents("widget", 3) == 3 * 1999
    assert app.price_cents("gadget", 2, {"gadget": 5}) == 10
    with pytest.raises(app.HttpError) as err:
        app.price_cents("sprocket", 1)
    assert err.value.status == 404


@pytest.mark.parametrize(
    ("dependency", "status", "expected"),
    [
        ("inventory", 404, 404),
        ("inventory", 409, 409),
        ("inventory", 400, 502),
        ("inventory", 500, 502),
        ("payments", 402, 402),
        ("payments", 400, 400),
        ("payments", 404, 502),
        ("payments", 503, 502),
    ],
)
def test_dependency_failure_mapping(dependency, status, expected):
    error = app.dependency_failure(dependency, status, {"error": "boom"})
    assert error.status == expected
    assert "boom" in error.message


def test_dependency_failure_without_error_field():
    assert app.dependency_failure("payments", 503, {}).message == "payments failed: HTTP 503"


# --- orchestration with a fake dependency client -----------------------------------------------


class FakeDependencies:
    """Stands in for call_json: answers per path and records every call."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, method, url, payload=None, request_id=None, timeout=None):
        self.calls.append((method, url, payload, request_id))
        answer = self.answers[url]
        if isinstance(answer, Exception):
            raise answer
        return answer


def make_app(monkeypatch, answers):
    fake = FakeDependencies(answers)
    monkeypatch.setattr(app, "call_json", fake)
    return app.App({}, URLS), fake


RESERVED = (200, {"reserved": True, "reservation_id": "res_1"})
CHARGED = (200, {"charged": True, "payment_id": "pay_1"})
RELEASED = (200, {"released": True})


def body(values):
    return json.dumps(values).encode()


def test_create_order_reserves_then_charges(monkeypatch):
    orders, fake = make_app(
        monkeypatch,
        {
            "http://inventory.test/reserve": RESERVED,
            "http://payments.test/charge": CHARGED,
        },
    )
    status, order = orders.create_order({}, body(GOOD), "rid-1")
    assert status == 201
    assert order["sku"] == "widget" and order["quantity"] == 2
    assert order["amount_cents"] == 2 * 1999 and order["payment_id"] == "pay_1"
    assert order["order_id"].startswith("ord_")
    assert fake.calls == [
        ("POST", "http://inventory.test/reserve", {"sku": "widget", "quantity": 2}, "rid-1"),
        (
            "POST",
            "http://payments.test/charge",
            {"amount_cents": 3998, "card": "4242424242424242"},
            "rid-1",
        ),
    ]
    assert orders.get_order({"order_id": order["order_id"]}, b"", None) == (200, order)


def test_unknown_sku_is_404_before_any_call(monkeypatch):
    orders, fake = make_app(monkeypatch, {})
    with pytest.raises(app.HttpError) as err:
        orders.create_order({}, body({**GOOD, "sku": "sprocket"}), None)
    assert err.value.status == 404
    assert fake.calls == []


def test_out_of_stock_is_409_and_no_charge(monkeypatch):
    orders, fake = make_app(
        monkeypatch,
        {
            "http://inventory.test/reserve": (409, {"error": "insufficient stock for gizmo"}),
        },
    )
    with pytest.raises(app.HttpError) as err:
        orders.create_order({}, body({**GOOD, "sku": "gizmo"}), None)
    assert err.value.status == 409 and "insufficient" in err.value.message
    assert [call[1] for call in fake.calls] == ["http://inventory.test/reserve"]


def test_declined_card_is_402_and_releases_the_reservation(monkeypatch):
    orders, fake = make_app(
        monkeypatch,
        {
            "http://inventory.test/reserve": RESERVED,
            "http://payments.test/charge": (402, {"error": "card declined"}),
            "http://inventory.test/release": RELEASED,
        },
    )
    with pytest.raises(app.HttpError) as err:
        orders.create_order({}, body({**GOOD, "card": "4000000000000002"}), None)
    assert err.value.status == 402
    assert fake.calls[-1][1:3] == ("http://inventory.test/release", {"reservation_id": "res_1"})


def test_inventory_unreachable_is_502(monkeypatch):
    orders, _ = make_app(
        monkeypatch,
        {
            "http://inventory.test/reserve": app.DependencyError("connection refused"),
        },
    )
    with pytest.raises(app.HttpError) as err:
        orders.create_order({}, body(GOOD), None)
    assert err.value.status == 502 and "inventory unreachable" in err.value.message


def test_payments_unreachable_is_502_and_releases(monkeypatch):
    orders, fake = make_app(
        monkeypatch,
        {
            "http://inventory.test/reserve": RESERVED,
            "http://payments.test/charge": app.DependencyError("timed out"),
            "http://inventory.test/release": RELEASED,
        },
    )
    with pytest.raises(app.HttpError) as err:
        orders.create_order({}, body(GOOD), None)
    assert err.value.status == 502 and "payments unreachable" in err.value.message
    assert fake.calls[-1][1] == "http://inventory.test/release"


def test_failed_release_still_answers_the_payment_error(monkeypatch):
    orders, _ = make_app(
        monkeypatch,
        {
            "http://inventory.test/reserve": RESERVED,
            "http://payments.test/charge": (402, {"error": "card declined"}),
            "http://inventory.test/release": app.DependencyError("connection refused"),
        },
    )
    with pytest.raises(app.HttpError) as err:
        orders.create_order({}, body(GOOD), None)
    assert err.value.status == 402


def test_unknown_order_is_404(monkeypatch):
    orders, _ = make_app(monkeypatch, {})
    with pytest.raises(app.HttpError) as err:
        orders.get_order({"order_id": "ord_missing"}, b"", None)
    assert err.value.status == 404


def test_healthz_and_version_make_no_calls(monkeypatch):
    orders, fake = make_app(monkeypatch, {})
    assert orders.healthz({}, b"", None) == (200, {"status": "ok"})
    assert orders.version({}, b"", None) == (200, {"service": "orders", "version": "unknown"})
    assert fake.calls == []
