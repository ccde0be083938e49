"""Recorded canary windows: kept in the ledger beside the deployment, and replayed under other
limits (`relay.replay`)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from relay.analysis import CheckResult, Verdict
from relay.errors import TerminalError
from relay.ledger import Ledger
from relay.manifest import Analysis
from relay.replay import Counters, Window, replay, window_rows

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
RECORDED = Analysis(max_error_rate=0.05, min_requests=20)


def window(
    step: int,
    canary: tuple[int, int],
    stable: tuple[int, int] | None = (400, 0),
    *,
    run: str = "run-aaaaaaaa-1",
    steps: int = 3,
    limits: Analysis = RECORDED,
    alarms: dict[str, str] | None = None,
) -> Window:
    """A recorded step: (requests, errors) of each version, 40 ms answers."""
    judged = Window(
        app="shop",
        environment="prod",
        service="orders",
        image="r/orders@sha256:" + "a" * 64,
        run_id=run,
        deploy_run_id=f"deploy-{run}",
        step=step,
        steps=steps,
        weight=(20, 50, 80)[step - 1],
        started_at=T0 + timedelta(seconds=30 * step),
        ended_at=T0 + timedelta(seconds=30 * step + 20),
        canary=Counters(requests=canary[0], errors=canary[1], response_ms_total=canary[0] * 40),
        stable=(
            Counters(requests=stable[0], errors=stable[1], response_ms_total=stable[0] * 40)
            if stable
            else None
        ),
        limits=limits,
        alarms=alarms or {},
        verdict=Verdict.SUCCESSFUL,
    )
    verdict = judged.judge()
    return judged.model_copy(update={"verdict": verdict.verdict, "reasons": verdict.reasons})


# A canary that passed its three steps with 3 % errors against a 5 % limit.
PASSED = [window(1, (100, 3)), window(2, (250, 8)), window(3, (400, 12))]


def test_the_recorded_limits_give_the_recorded_verdicts() -> None:
    replayed = replay(PASSED)
    assert [s.judgement.verdict for s in replayed.steps] == [w.verdict for w in PASSED]
    assert replayed.stopped_at is None
    assert replayed.summary() == "with these limits the canary passes all 3 step(s)"


def test_a_stricter_limit_stops_the_canary_at_the_first_step_above_it() -> None:
    replayed = replay(list(reversed(PASSED)), {"max_error_rate": 0.02, "max_response_ms": None})
    assert [s.window.step for s in replayed.steps] == [1], "replay goes in step order, stops"
    assert replayed.stopped_at is not None
    assert replayed.summary().startswith(
        "with these limits the canary fails at step 1 (20%): error rate 3.0% is above the 2.0%"
    )


def test_a_failed_canary_with_looser_limits_would_have_passed_its_recorded_steps() -> None:
    failed = [window(1, (100, 3)), window(2, (250, 25))]
    assert failed[1].verdict == Verdict.FAILED
    replayed = replay(failed, {"max_error_rate": 0.2})
    assert replayed.stopped_at is None
    assert "would have passed the 2 step(s) recorded" in replayed.summary()
    assert "other 1 step(s) have no windows" in replayed.summary()


def test_relative_limits_replayed_on_windows_recorded_without_them() -> None:
    shared = [window(1, (100, 30), stable=(400, 120)), window(2, (100, 30), stable=(400, 0))]
    replayed = replay(shared, {"max_error_rate_increase": 0.1, "max_error_rate": 0.5})
    assert [s.judgement.verdict for s in replayed.steps] == [Verdict.SUCCESSFUL, Verdict.FAILED]
    assert "above the stable version's 0.0%" in replayed.summary()


def test_an_alarm_recorded_in_alarm_still_fails_the_step() -> None:
    alarmed = [window(1, (100, 0), alarms={"orders-5xx": "ALARM"})]
    replayed = replay(alarmed, {"max_error_rate": 0.5})
    assert "CloudWatch alarm 'orders-5xx' is in ALARM" in replayed.summary()


def test_a_check_recorded_over_its_limit_still_fails_the_step_and_survives_the_ledger(
    tmp_path: Path,
) -> None:
    checked = window(1, (100, 0)).model_copy(
        update={"checks": (CheckResult("p99-ratio", 2.5, max=1.5),)}
    )
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.add_window(checked)
    [kept] = ledger.windows_of_run(checked.run_id)
    assert kept.checks == (CheckResult("p99-ratio", 2.5, max=1.5),)
    replayed = replay([kept], {"max_error_rate": 0.5})
    assert "check 'p99-ratio': 2.5 is above its max 1.5" in replayed.summary()


def test_a_limit_out_of_range_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="max_error_rate"):
        replay(PASSED, {"max_error_rate": 3})


def test_windows_are_kept_in_the_ledger_and_found_by_run_or_service(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    older = [window(1, (100, 50), run="run-aaaaaaaa-0", steps=3)]
    for recorded in [*older, *PASSED]:
        ledger.add_window(recorded)

    assert ledger.windows("shop", "prod", "orders") == PASSED, "the latest canary's windows"
    assert ledger.windows_of_run("run-aaaaaaaa-0") == older
    assert ledger.windows_of_run("deploy-run-aaaaaaaa-1") == PASSED, "or by its deployment"
    assert ledger.windows("shop", "dev", "orders") == []
    with pytest.raises(TerminalError, match="several canary runs"):
        ledger.windows_of_run("run-aaaaaaaa")
    with sqlite3.connect(ledger.path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("DELETE FROM analysis_windows")


def test_rows_show_both_versions_side_by_side() -> None:
    [row] = window_rows([window(1, (100, 3), stable=(400, 4))])
    assert row["canary"] == "100 req, 3 err (3.0%), 40 ms"
    assert row["stable"] == "400 req, 4 err (1.0%), 40 ms"
    assert row["window"] == "10:00:30-10:00:50"
    assert row["verdict"] == "successful"
