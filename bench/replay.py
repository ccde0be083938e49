"""Replay benchmark: how long `relay analysis replay` takes over 1,000 recorded windows.

The windows of one long canary (1,000 steps: the worst a run can record) are written to a
ledger file of their own, then read back and judged again with other limits, as the command
does; each repetition times the read and the judging separately. Target: <= 1 s in all.

Prints the medians and merges the raw numbers into bench/results.json under `replay`.
Run it with `make bench`, or alone: `.venv/bin/python bench/replay.py [--windows N]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import write_results  # noqa: E402
from relay.analysis import Verdict  # noqa: E402
from relay.ledger import Ledger  # noqa: E402
from relay.manifest import Analysis  # noqa: E402
from relay.replay import Counters, Window, replay  # noqa: E402

RUN = "bench-replay-0001"


def recorded(count: int) -> list[Window]:
    """`count` passed steps, each with some errors on both sides."""
    start = datetime(2026, 12, 7, tzinfo=UTC)
    limits = Analysis(max_error_rate=0.05, max_error_rate_increase=0.02)
    return [
        Window(
            app="bench",
            environment="prod",
            service="orders",
            image="r/orders@sha256:" + "b" * 64,
            run_id=RUN,
            deploy_run_id=None,
            step=step,
            steps=count,
            weight=1 + step % 99,
            started_at=start + timedelta(seconds=10 * step),
            ended_at=start + timedelta(seconds=10 * step + 9),
            canary=Counters(requests=200 + step % 50, errors=step % 5, response_ms_total=8000),
            stable=Counters(requests=800, errors=step % 7, response_ms_total=32000),
            limits=limits,
            verdict=Verdict.SUCCESSFUL,
        )
        for step in range(1, count + 1)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="relay-bench-replay-") as tmp:
        ledger = Ledger(Path(tmp) / "ledger.db")
        for window in recorded(args.windows):
            ledger.add_window(window)
        reads, judging = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            windows = ledger.windows_of_run(RUN)
            t1 = time.perf_counter()
            result = replay(windows, {"max_error_rate": 0.1, "max_error_rate_increase": 0.05})
            t2 = time.perf_counter()
            reads.append(t1 - t0)
            judging.append(t2 - t1)
    assert len(windows) == len(result.steps) == args.windows, "every window judged"
    total = [r + j for r, j in zip(reads, judging, strict=True)]
    print(f"replay of {args.windows} recorded windows, {args.repeat} runs (medians):")
    print(f"  read from the ledger  {statistics.median(reads):.3f} s")
    print(f"  judged again          {statistics.median(judging):.3f} s")
    print(f"  in all                {statistics.median(total):.3f} s   (target <= 1 s)")
    path = write_results(
        "replay",
        {"windows": args.windows, "read_s": reads, "judge_s": judging, "total_s": total},
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
