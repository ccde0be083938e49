"""Pure logic of the inventory service: no network, no server."""

import threading

import inventory_app as app
import pytest


def test_http_contract_of_the_handler():
    assert app.Handler.protocol_version == "HTTP/1.1"
    assert app.Handler.disable_nagle_algorithm is True
    assert app.HOST == "127.0.0.1"
    assert app.DEFAULT_PORT == 8003


@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        ("GET", "/healthz", ("healthz", {})),
        ("GET", "/version?x=1", ("version", {})),
        ("GET", "/stock/widget", ("get_stock", {"sku": "widget"})),
        ("POST", "/reserve", ("reserve", {})),
        ("POST", "/release", ("release", {})),
    ],
)
def test_route_finds_handlers(method, target, expected):
    assert app.route(method, target) == expected


def test_route_unknown_path_is_404():
    with pytest.raises(app.HttpError) as err:
        app.route("GET", "/stock/wid..get")
    assert err.value.status == 404


def test_route_wrong_method_is_405_with_allow():
    with pytest.raises(app.HttpError) as err:
        app.route("GET", "/reserve")
    assert err.value.status == 405
    assert err.value.headers == {"Allow": "POST"}


def test_validate_reservation_accepts_good_body():
    assert app.validate_reservation({"sku": "widget", "quantity": 2}) == ("widget", 2)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"sku": "", "quantity": 1},
        {"sku": 5, "quantity": 1},
        {"sku": "widget"},
        {"sku": "widget", "quantity": 0},
        {"sku": "widget", "quantity": -1},
        {"sku": "widget", "quantity": "2"},
        {"sku": "widget", "quantity": True},
        {"sku": "widget", "quantity": 1.5},
        {"sku": "widget", "quantity": app.MAX_QUANTITY + 1},
    ],
)
def test_validate_reservation_rejects_bad_body(body):
    with pytest.raises(app.HttpError) as err:
        app.validate_reservation(body)
    assert err.value.status == 400


def test_plan_reservation_is_pure():
    stock = {"widget": 5}
    assert app.plan_reservation(stock, "widget", 5) == 0
    assert app.plan_reservation(stock, "widget", 2) == 3
    assert stock == {"widget": 5}


def test_plan_reservation_insufficient_is_409():
    with pytest.raises(app.HttpError) as err:
        app.plan_reservation({"gizmo": 0}, "gizmo", 1)
    assert err.value.status == 409


def test_plan_reservation_unknown_sku_is_404():
    with pytest.raises(app.HttpError) as err:
        app.plan_reservation({"widget": 5}, "sprocket", 1)
    assert err.value.status == 404


def test_stock_reserve_then_release_restores():
    stock = app.Stock({"widget": 4})
    reservation = stock.reserve("widget", 3)
    assert reservation["reserved"] is True and reservation["available"] == 1
    assert stock.available("widget") == 1
    released = stock.release(reservation["reservation_id"])
    assert released["released"] is True and released["available"] == 4
    assert stock.available("widget") == 4


def test_stock_release_only_once():
    stock = app.Stock({"widget": 4})
    reservation_id = stock.reserve("widget", 1)["reservation_id"]
    stock.release(reservation_id)
    with pytest.raises(app.HttpError) as err:
        stock.release(reservation_id)
    assert err.value.status == 404
    assert stock.available("widget") == 4


def test_stock_never_oversells_under_concurrency():
    stock = app.Stock({"widget": 20})
    outcomes = []
    lock = threading.Lock()

    def buy():
        try:
            stock.reserve("widget", 1)
            result = "ok"
        except app.HttpError as exc:
            result = exc.status
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=buy) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 20
    assert outcomes.count(409) == 30
    assert stock.available("widget") == 0


def test_initial_stock_has_an_in_stock_and_an_out_of_stock_item():
    assert app.INITIAL_STOCK["widget"] > 0
    assert app.INITIAL_STOCK["gizmo"] == 0


def test_app_handlers():
    handlers = app.App({"GIT_SHA": "abc123"}, app.Stock({"widget": 2}))
    assert handlers.healthz({}, b"", None) == (200, {"status": "ok"})
    assert handlers.version({}, b"", None) == (200, {"service": "inventory", "version": "abc123"})
    assert handlers.get_stock({"sku": "widget"}, b"", None) == (
        200,
        {"sku": "widget", "available": 2},
    )
    status, body = handlers.reserve({}, b'{"sku": "widget", "quantity": 2}', None)
    assert status == 200 and body["available"] == 0


def test_app_release_needs_a_reservation_id():
    handlers = app.App({}, app.Stock({"widget": 2}))
    with pytest.raises(app.HttpError) as err:
        handlers.release({}, b"{}", None)
    assert err.value.status == 400


def test_version_defaults_to_unknown():
    assert app.service_version({}) == "unknown"
    assert app.service_version({"GIT_SHA": "  "}) == "unknown"


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_parse_json_object_rejects_non_objects(raw):
    with pytest.raises(app.HttpError) as err:
        app.parse_json_object(raw)
    assert err.value.status == 400


def test_resolve_port():
    assert app.resolve_port({}) == 8003
    assert app.resolve_port({"PORT": "18003"}) == 18003
    for bad in ("abc", "0", "70000", "-1"):
        with pytest.raises(app.ConfigError):
            app.resolve_port({"PORT": bad})


def test_sanitize_request_id():
    assert app.sanitize_request_id("abc-123_x.y") == "abc-123_x.y"
    assert app.sanitize_request_id("bad id\r\nX-Evil: 1") is None
    assert app.sanitize_request_id(None) is None
