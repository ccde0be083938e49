"""relay.progress: Prefect's runs of one command, turned into what each service is doing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from relay.progress import RunView, changes, new_waiting, rows, snapshot

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def flow(id: str, name: str, parent: str | None = None, **parameters: object) -> RunView:
    return RunView(id, "flow", name, parent, "Running", "RUNNING", at(0), None, dict(parameters))


def task(
    id: str, name: str, flow_id: str, start: float, state: str = "Completed", end: float = 0
) -> RunView:
    state_type = {"Completed": "COMPLETED", "Running": "RUNNING", "Failed": "FAILED"}[state]
    ended = at(end or start + 1) if state_type != "RUNNING" else None
    return RunView(id, "task", name, flow_id, state, state_type, at(start), ended)


RELEASE = [
    flow("r", "release-1a2b"),
    task("t-checkout", "checkout-commit-3f2", "r", 0),
    task("w-build", "build-service-1ab", "r", 1, "Running"),  # the release's task for a build
    task("w-sub", "build-0d1e2f3a-aaaa-bbbb-cccc-000000000001", "w-build", 1),  # subflow's
    flow("b", "build-payments", "w-sub", service="payments", environment="dev"),
    task("t-compile", "compile-service-a1c", "b", 2),
    task("t-unit", "run-unit-tests-77e", "b", 3, "Running"),
    flow("c", "canary-orders-prod", "w-c", spec={"service": "orders", "environment": "prod"}),
    task("w-c", "canary-0d1e2f3a-aaaa-bbbb-cccc-000000000002", "r", 4),
    task("t-w10", "set-weight-10%", "c", 5),
    task("t-w50", "set-weight-50%", "c", 6, "Running"),
    task("t-lock", "record-deployment-9ab", "c", 4.5),  # bookkeeping: not a stage
]


def test_each_service_shows_its_newest_stage_and_the_canary_its_weight() -> None:
    snap = snapshot(RELEASE)
    table = {(r.service, r.environment): r for r in rows(snap, at(10))}
    assert set(table) == {("release-1a2b", ""), ("payments", "dev"), ("orders", "prod")}
    assert table[("payments", "dev")].stage == "run-unit-tests"
    assert table[("payments", "dev")].state == "Running"
    assert table[("payments", "dev")].seconds == 8  # since its first stage, still running
    assert table[("orders", "prod")].weight == 50
    assert table[("release-1a2b", "")].stage == "checkout-commit"  # subflow wrappers are not


def test_lines_say_each_start_once_and_a_failure_without_repeating_its_message() -> None:
    first = snapshot(RELEASE[:6])
    assert [text for _, text in changes(None, first)] == [
        "release-1a2b: checkout-commit",
        "payments dev: compile-service",
    ]
    failed = [*RELEASE[:6], task("t-unit", "run-unit-tests-77e", "b", 3, "Failed", 4)]
    later = snapshot(failed, first)
    assert [text for _, text in changes(first, later)] == [
        "payments dev: run-unit-tests",
        "payments dev: run-unit-tests failed",
    ]
    assert changes(later, snapshot(failed, later)) == []  # nothing new, nothing said


def test_a_run_waiting_for_a_person_is_said_once() -> None:
    paused = RunView("a", "flow", "approve-shop-prod", "w", "Paused", "PAUSED", at(1), None)
    snap = snapshot([*RELEASE, paused])
    assert [w.name for w in new_waiting(snapshot(RELEASE), snap)] == ["approve-shop-prod"]
    assert new_waiting(snap, snapshot([*RELEASE, paused], snap)) == []
    assert changes(snapshot(RELEASE), snap) == []  # not a stage: said once, by new_waiting


def test_a_step_keeps_its_service_when_prefect_files_it_elsewhere_later() -> None:
    """A rolled-back promotion's steps end up under the promotion's run in Prefect."""
    first = snapshot(RELEASE)
    moved = [r for r in RELEASE if r.id != "t-w50"] + [task("t-w50", "set-weight-50%", "r", 6)]
    assert snapshot(moved, first).steps["t-w50"].service == "orders"
    assert snapshot(moved).steps["t-w50"].service == "release-1a2b"  # what it would be without
