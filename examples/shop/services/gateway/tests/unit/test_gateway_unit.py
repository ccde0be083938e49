"""Pure logic of the gateway; calls to orders are replaced by a fake (no network)."""

import hashlib

import gateway_app as app
import pytest

URLS = {"orders": "http://orders.test"}


def test_http_contract_of_the_handler():
    assert app.Handler.protocol_version == "HTTP/1.1"
    assert app.Handler.disable_nagle_algorithm is True
    assert app.HOST == "127.0.0.1"
    assert app.DEFAULT_PORT == 8001
    assert app.CALL_TIMEOUT_SECONDS == 2.0


def test_route():
    assert app.route("POST", "/api/orders") == ("create_order", {})
    assert app.route("GET", "/api/orders/ord_1") == ("get_order", {"order_id": "ord_1"})
    assert app.route("GET", "/healthz") == ("healthz", {})
    assert app.route("GET", "/version") == ("version", {})
    assert app.route("GET", "/config") == ("config", {})
    with pytest.raises(app.HttpError) as err:
        app.route("DELETE", "/api/orders/ord_1")
    assert err.value.status == 405 and err.value.headers == {"Allow": "GET"}
    for target in ("/orders", "/api/stock/widget", "/api/orders/a%2Fb"):
        with pytest.raises(app.HttpError) as err:
            app.route("GET", target)
        assert err.value.status == 404


def test_upstream_url():
    assert app.upstream_url("http://o", "create_order", {}) == "http://o/orders"
    assert (
        app.upstream_url("http://o", "get_order", {"order_id": "ord_1"}) == "http://o/orders/ord_1"
    )
    with pytest.raises(ValueError):
        app.upstream_url("http://o", "healthz", {})


def test_request_ids_are_fresh_hex():
    ids = {app.new_request_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_resolve_dependencies():
    assert app.resolve_dependencies({"ORDERS_URL": "http://127.0.0.1:18002/"}, ("orders",)) == {
        "orders": "http://127.0.0.1:18002"
    }
    with pytest.raises(app.ConfigError) as err:
        app.resolve_dependencies({}, ("orders",))
    assert "ORDERS_URL is not set" in str(err.value)


def test_main_exits_2_without_orders_url(monkeypatch, capsys):
    monkeypatch.delenv("ORDERS_URL", raising=False)
    assert app.main() == 2
    assert "ORDERS_URL" in capsys.readouterr().err


class FakeOrders:
    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def __call__(self, method, url, payload=None, request_id=None, timeout=None):
        self.calls.append((method, url, payload, request_id))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_create_order_forwards_body_and_request_id(monkeypatch):
    fake = FakeOrders((201, {"order_id": "ord_1"}))
    monkeypatch.setattr(app, "call_json", fake)
    gateway = app.App({}, URLS)
    assert gateway.create_order({}, b'{"sku": "widget"}', "rid") == (201, {"order_id": "ord_1"})
    assert fake.calls == [("POST", "http://orders.test/orders", {"sku": "widget"}, "rid")]


def test_orders_errors_pass_through(monkeypatch):
    monkeypatch.setattr(app, "call_json", FakeOrders((402, {"error": "card declined"})))
    gateway = app.App({}, URLS)
    assert gateway.create_order({}, b"{}", "rid") == (402, {"error": "card declined"})


def test_get_order_forwards(monkeypatch):
    fake = FakeOrders((404, {"error": "unknown order: ord_2"}))
    monkeypatch.setattr(app, "call_json", fake)
    gateway = app.App({}, URLS)
    assert gateway.get_order({"order_id": "ord_2"}, b"", "rid")[0] == 404
    assert fake.calls == [("GET", "http://orders.test/orders/ord_2", None, "rid")]


def test_orders_unreachable_is_502(monkeypatch):
    monkeypatch.setattr(app, "call_json", FakeOrders(app.DependencyError("connection refused")))
    gateway = app.App({}, URLS)
    with pytest.raises(app.HttpError) as err:
        gateway.get_order({"order_id": "ord_1"}, b"", "rid")
    assert err.value.status == 502


def test_bad_json_is_400_without_calling_orders(monkeypatch):
    fake = FakeOrders((201, {}))
    monkeypatch.setattr(app, "call_json", fake)
    with pytest.raises(app.HttpError) as err:
        app.App({}, URLS).create_order({}, b"{not json", "rid")
    assert err.value.status == 400
    assert fake.calls == []


def test_healthz_and_version_make_no_calls(monkeypatch):
    fake = FakeOrders((500, {}))
    monkeypatch.setattr(app, "call_json", fake)
    gateway = app.App({"GIT_SHA": "abc"}, URLS)
    assert gateway.healthz({}, b"", None) == (200, {"status": "ok"})
    assert gateway.version({}, b"", None) == (200, {"service": "gateway", "version": "abc"})
    assert fake.calls == []


def test_config_shows_fingerprints_of_the_injected_keys_only():
    environ = {"RELAY_CONFIG_KEYS": "GREETING,API_KEY", "GREETING": "hi", "API_KEY": "s3cret"}
    answer = app.App({**environ, "HOME": "/root"}, URLS).config({}, b"", None)
    digest = hashlib.sha256(b"s3cret").hexdigest()
    assert answer[0] == 200
    assert set(answer[1]["keys"]) == {"GREETING", "API_KEY"}
    assert answer[1]["keys"]["API_KEY"] == digest
    assert "s3cret" not in str(answer)
    assert app.App({}, URLS).config({}, b"", None) == (200, {"keys": {}})
