"""The combined table of issue #10: every figure in bench/results.json beside its target.

Run last by `make bench`, after fleet, overhead, rollback, memory and webhooks have merged
their keys into bench/results.json; or alone: `.venv/bin/python bench/report.py`
(`--markdown` prints the same rows as a Markdown table, for the READMEs). A key that is
missing (its benchmark did not run or failed) is shown as "not measured". Exits 0 either way:
the table reports, it does not gate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import PATH  # noqa: E402

Row = tuple[str, str, str, str]  # figure, value, target, verdict
RELAY_FORM = "relay"  # the flow form Relay's flows use: async flows, sync tasks
FORM_LABEL = {
    "relay": "async flow + sync tasks, one client (Relay)",
    "mixed": "async flow + sync tasks, a client each",
    "sync": "sync (Relay before)",
    "async": "async",
    "sync_nohb": "sync, heartbeat off",
}


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT MET")


def _missing(figure: str, target: str) -> Row:
    return (figure, "not measured", target, "n/a")


def overhead_rows(data: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    backends = _get(data, "overhead", "backends")
    if not backends:
        return [_missing("orchestration overhead", "<= 50 ms/task, <= 5 %")]
    for backend, result in backends.items():
        if "error" in result:
            rows.append(_missing(f"overhead, {backend}", "<= 50 ms/task, <= 5 %"))
            continue
        forms = [f for f in FORM_LABEL if f"{f}_per_task_s" in result]
        fastest = min(forms, key=lambda f: result[f"{f}_per_task_s"])
        for form in forms:
            per, frac = result[f"{form}_per_task_s"], result[f"{form}_overhead_fraction"]
            tags = [FORM_LABEL[form]] + (["fastest"] if form == fastest else [])
            label = f"overhead, {backend}, {', '.join(tags)}"
            rows.append((f"{label}: per task", f"{per * 1e3:.0f} ms", "<= 50 ms",
                         _verdict(per <= 0.050)))  # fmt: skip
            rows.append((f"{label}: share of 10 x 0.3 s work", f"{frac * 100:.1f} %", "<= 5 %",
                         _verdict(frac <= 0.05)))  # fmt: skip
        median = result.get("median", {})
        if RELAY_FORM in forms and {"relay_work", "direct_work"} <= median.keys():
            # Prefect's cost per flow run is fixed (creating the run, its states, clients):
            # from which stage length does Relay's form stay within 5 %?
            extra = median["relay_work"] - median["direct_work"]
            stages = _get(data, "overhead", "stages") or 10
            rows.append((f"overhead, {backend}, Relay: 5 % reached with stages of",
                         f"{extra / (0.05 * stages):.2f} s ({extra:.2f} s per run)", "-",
                         "n/a"))  # fmt: skip
    return rows


def fleet_rows(data: dict[str, Any]) -> list[Row]:
    summary = _get(data, "fleet", "summary")
    if not summary:
        return [_missing("fleet makespan / DAG lower bound", "<= 1.1")]
    rows: list[Row] = []
    for c, s in sorted(summary.items(), key=lambda kv: int(kv[0])):
        ratio = s["makespan_over_bound"]
        rows.append((
            f"fleet makespan / DAG lower bound, 50 services, C={c}",
            f"{ratio:.3f} ({s['makespan_s']['median']:.2f} s / {s['lower_bound_s']:.2f} s)",
            "<= 1.1",
            _verdict(ratio <= 1.1),
        ))  # fmt: skip
    return rows


def promotion_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for key, backend in (("promotion", "SQLite"), ("promotion_postgresql", "PostgreSQL")):
        runs = _get(data, key, "runs")
        if not runs:
            rows.append(_missing(f"promotion makespan / DAG lower bound ({backend})", "<= 1.1"))
            continue
        services, window = _get(data, key, "services"), _get(data, key, "window_s")
        rows += [
            (
                f"promotion makespan / DAG lower bound, {services} canaries of 3 x {window} s, "
                f"C={r['concurrency']}, Prefect on {backend}",
                f"{r['ratio']:.3f} ({r['makespan_s']:.2f} s / {r['bound_s']:.2f} s; "
                f"one after another: {r['serial_s']:.0f} s)",
                "<= 1.1",
                _verdict(r["ratio"] <= 1.1 and r["providers_first"]),
            )
            for r in runs
        ]
    return rows


def rollback_rows(data: dict[str, Any]) -> list[Row]:
    summary = _get(data, "rollback", "summary")
    if not summary:
        return [_missing("rollback: analysis 'failed' -> 100 % stable", "<= 1 s, 0 errors")]
    back = summary["flow.decision_to_weights_back_s"]
    done = summary["flow.decision_to_abort_done_s"]
    errors = {
        key: summary[key]["max"]
        for key in (
            "flow.transport_errors",
            "flow.stable_non_200",
            "platform.window_transport_errors",
            "platform.window_stable_non_200",
            "platform.window_proxy_errors",
        )
        if summary.get(key, {}).get("max") is not None
    }
    total = sum(errors.values())
    runs = len(_get(data, "rollback", "flow_runs") or [])
    return [
        (
            f"rollback: analysis 'failed' -> 100 % stable traffic (median / max of {runs})",
            f"{back['median'] * 1e3:.0f} / {back['max'] * 1e3:.0f} ms",
            "<= 1 s",
            _verdict(back["max"] <= 1.0),
        ),
        (
            "rollback: analysis 'failed' -> abort task done (median / max)",
            f"{done['median'] * 1e3:.0f} / {done['max'] * 1e3:.0f} ms",
            "<= 1 s",
            _verdict(done["max"] <= 1.0),
        ),
        (
            "rollback: client errors under load (transport, stable non-200, proxy; max)",
            str(int(total)),
            "0",
            _verdict(total == 0),
        ),
        (
            "rollback: bad-version answers after weights back (max)",
            str(int(summary["flow.bad_after_weights_back"]["max"])),
            "0",
            _verdict(summary["flow.bad_after_weights_back"]["max"] == 0),
        ),
    ]


def webhook_rows(data: dict[str, Any]) -> list[Row]:
    """The receiver against the stack's SQLite server, and against PostgreSQL when measured."""
    rows = _webhook_rows(_get(data, "webhooks"), "sqlite")
    if _get(data, "webhooks_postgresql"):
        rows += _webhook_rows(_get(data, "webhooks_postgresql"), "postgresql")
    return rows


def _webhook_rows(hooks: dict[str, Any] | None, backend: str) -> list[Row]:
    if not hooks:
        return [_missing(f"webhook, {backend}: push -> 202 (queued)", "p99 <= 250 ms")]
    target = hooks["config"]["p99_target_ms"]
    rows: list[Row] = []
    same = _get(hooks, "latency", "same_commit", "latency_ms")
    if same:
        rows.append((
            f"webhook, {backend}: push -> 202 (queued), one at a time, p50 (n={same['n']})",
            f"{same['p50']:.0f} ms", "- (p99 only)", "n/a",
        ))  # fmt: skip
        rows.append((
            f"webhook, {backend}: push -> 202 (queued), one at a time, p99",
            f"{same['p99']:.0f} ms", f"<= {target:.0f} ms", _verdict(same["p99"] <= target),
        ))  # fmt: skip
    sus = hooks.get("sustained")
    if sus:
        check = sus["check"]
        lat = sus["latency_ms"]
        rows.append((
            f"webhook, {backend}: sustained, {sus['offered_rate']:g}/s x {sus['seconds']:g} s: "
            "p50 / p99",
            f"{lat['p50']:.0f} / {lat['p99']:.0f} ms", f"p99 <= {target:.0f} ms",
            _verdict(lat["p99"] <= target),
        ))  # fmt: skip
        rows.append((
            f"webhook, {backend}: sustained: accepted (202) / sent; runs on the server",
            f"{check['answered_202']} / {check['deliveries']}; {check['runs_on_server']} runs "
            f"({sus['accepted_rate']:g}/s accepted)",
            "none lost",
            _verdict(check["answered_202"] == check["deliveries"]
                     and check["none_lost_none_doubled"]),
        ))  # fmt: skip
        to_run = _get(sus, "runs", "queue_to_run_ms")
        if to_run:
            runs = sus["runs"]
            rows.append((
                f"webhook, {backend}: sustained: 202 -> its run on the server, p99; lost, doubled",
                f"{to_run['p99'] / 1e3:.1f} s; {runs['lost']} lost, {runs['doubled']} doubled",
                f"<= {runs['target_p99_s']:g} s, none", _verdict(runs["met"]),
            ))  # fmt: skip
        rep = sus.get("replay")
        if rep:
            rows.append((
                f"webhook, {backend}: {rep['sent']} replayed deliveries -> new runs",
                str(rep["new_runs"]), "0", _verdict(rep["new_runs"] == 0),
            ))  # fmt: skip
    return rows


def memory_rows(data: dict[str, Any]) -> list[Row]:
    mem = _get(data, "memory")
    if not mem or not mem.get("memory"):
        return [_missing("peak memory of the worker, 20-service release", "none given")]
    m, release = mem["memory"], mem["release"]
    n = mem["services"]
    state = release.get("state_name")
    note = "" if release.get("state") == "COMPLETED" else f" (release {state})"

    def mib(key: str) -> str:
        return f"{m[key]:.0f} MiB" if m.get(key) is not None else "n/a"

    return [
        (f"peak memory: worker process, {n}-service release{note}", mib("worker_peak_mib"),
         "none given", "n/a"),
        ("peak memory: flow-run process (release, subflows, tasks)", mib("flow_run_peak_mib"),
         "none given", "n/a"),
        ("peak memory: worker + all descendants, sum of PSS", mib("tree_peak_pss_mib"),
         "none given", "n/a"),
    ]  # fmt: skip


def switch_back_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for key, backend in (("switch_back", "SQLite"), ("switch_back_postgresql", "PostgreSQL")):
        runs = _get(data, key, "runs")
        what = "blue/green switch back: command -> 100 % previous version"
        if not runs:
            rows.append(_missing(f"{what} ({backend})", "<= 1 s"))
            continue
        back = [r["all_traffic_back_s"] for r in runs]
        moved = statistics.median(r["weights_moved_s"] for r in runs)
        failed = sum(r["failed_requests"] for r in runs)
        rows.append(
            (
                f"blue/green switch back (relay rollback in the window), median of {len(runs)}, "
                f"Prefect on {backend}: command -> 100 % previous version",
                f"{statistics.median(back):.3f} s, max {max(back):.3f} s (weights moved at "
                f"{moved:.3f} s; {failed} failed requests)",
                "<= 1 s",
                _verdict(statistics.median(back) <= 1.0 and failed == 0),
            )
        )
    return rows


def scale_out_rows(data: dict[str, Any]) -> list[Row]:
    scale = _get(data, "scale_out")
    what = "release with nothing to build, service runs on 1 / 2 workers (PostgreSQL)"
    if not scale:
        return [_missing(what, "- (measured)")]
    one, two = scale["one_worker"], scale["two_workers"]
    return [
        (
            f"{what}, {scale['services']} services, {scale['cpus']} CPUs: wall time",
            f"{one['wall_s']:.0f} s / {two['wall_s']:.0f} s ({scale['speedup_two_over_one']:.2f}x)",
            "- (measured)",
            "n/a",
        ),
        (
            f"{what}: orchestration share of the service runs' lifetimes",
            f"{one['orchestration_share']:.0%} / {two['orchestration_share']:.0%}",
            "- (measured)",
            "n/a",
        ),
    ]


def replay_rows(data: dict[str, Any]) -> list[Row]:
    total = _get(data, "replay", "total_s")
    if not total:
        return [_missing("replay of 1,000 recorded analysis windows", "<= 1 s")]
    median = statistics.median(total)
    windows = _get(data, "replay", "windows")
    return [
        (
            f"replay of {windows} recorded analysis windows",
            f"{median:.3f} s",
            "<= 1 s",
            _verdict(median <= 1.0),
        )
    ]


SECTIONS: list[Callable[[dict[str, Any]], list[Row]]] = [
    overhead_rows,
    fleet_rows,
    promotion_rows,
    rollback_rows,
    webhook_rows,
    memory_rows,
    replay_rows,
    switch_back_rows,
    scale_out_rows,
]


def rows(data: dict[str, Any]) -> list[Row]:
    return [row for section in SECTIONS for row in section(data)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    parser.add_argument("--results", type=Path, default=PATH)
    args = parser.parse_args()
    try:
        data = json.loads(args.results.read_text())
    except (OSError, ValueError) as exc:
        print(f"report: cannot read {args.results}: {exc}", file=sys.stderr)
        return 1
    table = rows(data)
    header = ("figure", "value", "target", "met?")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|---|---|---|---|")
        for row in table:
            print("| " + " | ".join(row) + " |")
        return 0
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    print("\nIssue #10 benchmarks: every figure beside its target")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    missed = sum(1 for r in table if r[3] == "NOT MET")
    unmeasured = sum(1 for r in table if r[1] == "not measured")
    print(line)
    print(f"{missed} target(s) not met, {unmeasured} figure(s) not measured ({args.results})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
