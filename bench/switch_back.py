"""Switch-back benchmark: from `relay rollback` to all traffic on the previous version, when
blue/green still keeps that version running (`keep_previous_seconds`).

On the local stack, a one-service application (the example shop's payments) is released
through staging twice with blue/green, so v1 is kept running beside v2. Under a steady request
load on staging's public port, the rollback flow (what `relay rollback` runs) is started, and
two times are taken: until the router's weights moved (`set weight` returned; the platform's
own part) and until the load sees v1 only (every later answer is v1): the command's. Each
repetition releases v2 again. Target: <= 1 s from the command to 100 % on the previous version.

Prints medians and maxima and merges the raw numbers into bench/results.json under
`switch_back` (`--backend postgresql`: the same against a PostgreSQL-backed Prefect server this
benchmark starts, bench/postgres.py, under `switch_back_postgresql`). Run it with `make bench`,
or alone: `.venv/bin/python bench/switch_back.py [--backend postgresql]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tests.*` is not an installed package

import devstack  # noqa: E402
from bench.postgres import ON_POSTGRES, rerun_on_postgres  # noqa: E402
from bench.results import write_results  # noqa: E402

for _key, _value in devstack.environment().items():
    os.environ.setdefault(_key, _value)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from flows.release import release  # noqa: E402
from flows.rollback import rollback  # noqa: E402
from relay.traffic import HAProxyRouter  # noqa: E402
from tests.echo import Load  # noqa: E402
from tests.flows.shop import Shop, shop_repository  # noqa: E402

OFFSETS = {"dev": 17500, "staging": 17750, "prod": 18500}
URL = f"http://127.0.0.1:{8004 + OFFSETS['staging']}/version"


class _Factory:
    """What `shop_repository` asks of pytest's tmp_path_factory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mktemp(self, name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        return path


@contextmanager
def weights_moved() -> Iterator[list[float]]:
    """When each `set weight` returned, in this process (the rollback flow runs here)."""
    returned: list[float] = []
    original = HAProxyRouter.set_weight

    def set_weight(router: HAProxyRouter, service: str, weights: dict[str, int]) -> None:
        original(router, service, weights)
        returned.append(time.monotonic())

    HAProxyRouter.set_weight = set_weight  # type: ignore[method-assign]
    try:
        yield returned
    finally:
        HAProxyRouter.set_weight = original  # type: ignore[method-assign]


def one_switch_back(shop: Shop, v1: str, n: int) -> dict[str, Any]:
    shop.edit("services/payments/app.py", '"""', f'"""Payments v2, run {n}.\n')
    v2 = shop.commit(f"payments v2 #{n}")
    asyncio.run(release(str(shop.repo), v2, base=v1, through="staging"))
    with Load(URL, max_seconds=120) as load, weights_moved() as moved:
        load.wait_for_more(20)
        start = time.monotonic()
        asyncio.run(rollback(str(shop.repo), "payments", "staging"))
        ended = time.monotonic()
        load.wait_for_more(20)
    last_v2 = max(t for t, v, _ in load.log if v == v2)
    all_v1 = min(t for t, v, _ in load.log if v == v1 and t > last_v2)
    failed = [s for _, _, s in load.log if s != 200] + load.transport_errors
    shop.edit("services/payments/app.py", f'"""Payments v2, run {n}.\n', '"""')
    return {
        "weights_moved_s": moved[0] - start,
        "all_traffic_back_s": all_v1 - start,
        "command_s": ended - start,
        "failed_requests": len(failed),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    if args.backend == "postgresql" and not os.environ.get(ON_POSTGRES):
        return rerun_on_postgres(__file__)
    runs = []
    with (
        tempfile.TemporaryDirectory(prefix="relay-bench-switch-") as tmp,
        shop_repository(_Factory(Path(tmp)), "swb", OFFSETS, ("payments",)) as shop,  # type: ignore[arg-type]
    ):
        shop.edit_manifest(
            lambda m: m["environments"]["staging"].update(
                strategy="blue_green", keep_previous_seconds=300
            )
        )
        v1 = shop.commit("payments v1")
        asyncio.run(release(str(shop.repo), v1, through="staging"))
        for n in range(args.repeat):
            runs.append(one_switch_back(shop, v1, n))
            print(f"  run {n + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in runs[-1].items()))
    print(f"switch back on {args.backend}, {args.repeat} runs (median / max):")
    for key in ("weights_moved_s", "all_traffic_back_s", "command_s"):
        values = [r[key] for r in runs]
        print(f"  {key:20} {statistics.median(values):.3f} / {max(values):.3f} s")
    print(f"  failed requests      {sum(r['failed_requests'] for r in runs)}")
    key = "switch_back" if args.backend == "sqlite" else "switch_back_postgresql"
    path = write_results(key, {"runs": runs, "backend": args.backend})
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
