"""Stage commands on the worker (`runner: host`) through the same interface as a container:
reports and files come back by name, and nothing is left in the service's directory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from relay.errors import TerminalError
from relay.stages.site import StageSite, run_stage


def test_reports_and_files_come_back_and_the_directory_stays_clean(tmp_path: Path) -> None:
    site = StageSite(tmp_path)
    report_dir = site.report_dir("t1")
    script = (
        "import pathlib, sys\n"
        f"pathlib.Path({report_dir!r}, 'unit.xml').write_text('<testsuite/>')\n"
        "pathlib.Path('out.sarif').write_text('{}')\n"
        "print('ran')\n"
    )
    result = run_stage(
        None,
        site,
        [sys.executable, "-c", script],
        token="t1",
        reports=["unit.xml", "none.xml"],
        files=["out.sarif"],
    )
    assert result.ok and "ran" in result.output and result.where == "the worker (runner: host)"
    assert result.reports == {"unit.xml": b"<testsuite/>"} and result.files == {"out.sarif": b"{}"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.sarif"], "no report folder left"


def test_a_report_left_by_an_earlier_run_is_not_this_runs(tmp_path: Path) -> None:
    (tmp_path / "out.sarif").write_text("stale")
    result = run_stage(
        None, StageSite(tmp_path), [sys.executable, "-c", "pass"], files=["out.sarif"]
    )
    assert result.files == {}


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.sarif"])
def test_a_file_outside_the_service_is_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(TerminalError, match="write a path inside the service's directory"):
        run_stage(None, StageSite(tmp_path), [sys.executable, "-c", "pass"], files=[path])
