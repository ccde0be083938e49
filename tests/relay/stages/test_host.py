"""Stage commands run without a shell and without the worker's secrets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from relay.errors import StageFailed
from relay.stages.host import run_command


def test_a_command_sees_only_what_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    printer = "import os, json; print(json.dumps(sorted(os.environ)))"
    result = run_command([sys.executable, "-c", printer], cwd=tmp_path, env={"ORDERS_URL": "x"})
    assert result.ok
    assert "AWS_SECRET_ACCESS_KEY" not in result.output
    assert "ORDERS_URL" in result.output and "PATH" in result.output


def test_no_shell_and_clear_errors(tmp_path: Path) -> None:
    result = run_command(["echo", "$HOME", "&&", "false"], cwd=tmp_path)
    assert result.ok and result.output.strip() == "$HOME && false"
    with pytest.raises(StageFailed, match="'no-such-tool' is not installed on this worker"):
        run_command(["no-such-tool"], cwd=tmp_path)
    with pytest.raises(StageFailed, match="did not finish within 1 s"):
        run_command([sys.executable, "-c", "import time; time.sleep(5)"], cwd=tmp_path, timeout=1)
