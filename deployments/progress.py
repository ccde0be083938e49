"""Live progress of a `relay` command: what each service is doing while a release runs.

The command names its top run (`<flow>-<what>-<8 hex>`); a thread beside the flows finds that
run once a second, then every run under it, level by level, and the task runs of them all, and
shows what changed (`relay.progress` decides what that is):

- on a terminal, a table redrawn in place (rich's `Live`, as `kubectl argo rollouts get rollout
  --watch` does): each service's stage, state, elapsed time and canary weight, and every run
  that waits for a person with the command that answers it and its page in the Prefect UI;
- otherwise (CI, a pipe), plain lines, one per change.

It only reads: a failure to reach Prefect skips a beat and never stops the command. (Not a
Prefect tag on every run: Prefect checks a tag's concurrency limit for each task run that has
one, a call per task, and a busy server's 503 there fails the task.)
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TextIO

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.settings import PREFECT_UI_URL
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from relay.progress import RunView, Snapshot, Waiting, changes, new_waiting, rows, snapshot
from tasks.support.runs import flow_runs_under, task_runs_of

INTERVAL = 1.0
FINAL_ATTEMPTS = 5  # the last look, once the runs ended, asks a busy server this often


def run_name(what: str) -> str:
    """A name for one command's top run, found by it: `release-main-3f2a9c1b`."""
    return f"{what}-{uuid.uuid4().hex[:8]}"


@contextmanager
def watching(name: str, out: TextIO = sys.stderr) -> Iterator[_Watcher]:
    """Show the progress of the run named `name`, and of every run under it, on `out` while
    the body runs it; the watcher's `roots` are the top runs seen (id: name), what `relay
    retry` and `relay cancel` take."""
    watcher = _Watcher(name, out)
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.finish()


class _Watcher(threading.Thread):
    def __init__(self, name: str, out: TextIO) -> None:
        super().__init__(name="relay-progress", daemon=True)
        self.run_name = name
        self.out = out
        self.origin = datetime.now(UTC)
        self.stopping = threading.Event()
        self.last: Snapshot | None = None
        self.roots: dict[str, str] = {}
        self.filed: dict[str, str | None] = {}  # a rolled-back task run: the flow run it ran in
        self.console = Console(file=out)
        self.live: Live | None = None
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=4, transient=False)

    def run(self) -> None:
        if self.live is not None:
            self.live.start()
        try:
            with get_client(sync_client=True) as client:
                while not self.stopping.wait(INTERVAL):
                    self._beat(client)
                self._last_beat(client)
        finally:
            if self.live is not None:
                self.live.stop()

    def finish(self) -> None:
        self.stopping.set()
        self.join(timeout=15)

    def _last_beat(self, client: SyncPrefectClient) -> None:
        """The last changes, once the runs have ended: they say how it ended (a rollback's
        steps), so a busy server is asked again rather than skipped."""
        for _ in range(FINAL_ATTEMPTS):
            if self._beat(client):
                return
            time.sleep(INTERVAL)

    def _beat(self, client: SyncPrefectClient) -> bool:
        try:
            runs = _runs(client, self.run_name, self.filed)
        except Exception:  # noqa: BLE001 - progress is a view; Prefect busy or restarting
            return False
        for run in runs:
            if run.kind == "flow" and run.parent is None and run.id not in self.roots:
                self.roots[run.id] = run.name
                self.console.print(
                    f"{run.name}: {run.id}  {PREFECT_UI_URL.value()}/runs/flow-run/{run.id}",
                    highlight=False,
                    soft_wrap=True,
                )
        now = snapshot(runs, self.last)
        if self.live is not None:
            self.live.update(self._table(now))
        else:
            self._lines(now)
        self.last = now
        return True

    def _lines(self, now: Snapshot) -> None:
        for when, text in changes(self.last, now):
            seconds = ((when or datetime.now(UTC)) - self.origin).total_seconds()
            print(f"{max(seconds, 0.0):7.1f}s  {text}", file=self.out, flush=True)
        for waiting in new_waiting(self.last, now):
            print(f"          {_answer(waiting)}", file=self.out, flush=True)

    def _table(self, now: Snapshot) -> Group:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("SERVICE", "ENV", "STAGE", "STATE", "TIME", "CANARY"):
            table.add_column(column)
        for row in rows(now, datetime.now(UTC)):
            style = {"Failed": "red", "Crashed": "red", "Completed": "green"}.get(row.state, "")
            table.add_row(
                row.service,
                row.environment,
                row.stage,
                Text(row.state, style=style),
                f"{row.seconds:.0f}s",
                f"{row.weight}%" if row.weight is not None else "",
            )
        waiting = [Text(_answer(w), style="yellow") for w in now.waiting.values()]
        return Group(table, *waiting)


def _answer(waiting: Waiting) -> str:
    link = f"{PREFECT_UI_URL.value()}/runs/flow-run/{waiting.run_id}"
    return (
        f"{waiting.name} waits for a person: relay approve {waiting.run_id} --as NAME "
        f"(or relay reject ...), or {link}"
    )


def _runs(client: SyncPrefectClient, name: str, filed: dict[str, str | None]) -> list[RunView]:
    """The run named `name`, every flow run under it and the task runs of them all."""
    roots = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
    )
    flows = roots + [run for _, run in flow_runs_under(client, [r.id for r in roots])]
    tasks = task_runs_of(client, [r.id for r in flows])
    views = [_task_view(r, _ran_in(client, r, filed)) for r in tasks]
    return [_flow_view(r) for r in flows] + views


def _ran_in(client: SyncPrefectClient, run: TaskRun, filed: dict[str, str | None]) -> str | None:
    """The flow run a task run ran in. When a transaction rolls back, Prefect records the
    `RolledBack` state of every task in it from the flow that owns the transaction, and files
    the task run under that flow (a service's `abort-rollout` would show as the release's own
    step): the flow run of its first state is where it ran. Asked once per rolled-back run."""
    if run.state_name != "RolledBack":
        return str(run.flow_run_id) if run.flow_run_id else None
    key = str(run.id)
    if key not in filed:
        states = sorted(client.read_task_run_states(run.id), key=lambda s: s.timestamp)
        first = states[0].state_details.flow_run_id if states else run.flow_run_id
        filed[key] = str(first) if first else None
    return filed[key]


def _flow_view(run: FlowRun) -> RunView:
    return RunView(
        id=str(run.id),
        kind="flow",
        name=run.name,
        parent=str(run.parent_task_run_id) if run.parent_task_run_id else None,
        state=run.state_name or "",
        state_type=run.state_type.value if run.state_type else "",
        started=run.start_time,
        ended=run.end_time,
        parameters=dict(run.parameters),
    )


def _task_view(run: TaskRun, parent: str | None) -> RunView:
    return RunView(
        id=str(run.id),
        kind="task",
        name=run.name,
        parent=parent,
        state=run.state_name or "",
        state_type=run.state_type.value if run.state_type else "",
        started=run.start_time,
        ended=run.end_time,
    )
