"""A real browser on the Prefect UI: Debian's Chromium driven by Playwright.

Chromium comes from the Debian package (`scripts/install-deps`), never from a Playwright
download; Playwright from the `dev` extra. Either missing fails the tests with what to run:
a UI test that skips in CI would prove nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
except ImportError as exc:  # loud at collection, never a skip
    raise ImportError(
        "Playwright is not installed: run `make venv` (installs the `dev` extra)"
    ) from exc

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"
TIMEOUT_MS = 30_000  # any single UI step or expectation; the SPA answers in about a second


@pytest.fixture(scope="module", autouse=True)
def chromium_present() -> None:
    """Checked before any (slow) set-up of the module: a failure saying what to run."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium; "
            "run `make deps` (scripts/install-deps installs the `chromium` package)",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """One Chromium per module, with a fresh profile (`--user-data-dir`) in tmp."""
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1300},  # the whole Resume dialog
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """test-output/browser/, emptied once per session: the screenshots of this run only."""
    shutil.rmtree(OUTPUT, ignore_errors=True)
    OUTPUT.mkdir(parents=True)
    return OUTPUT


@pytest.fixture
def page(
    browser_context: BrowserContext, output_dir: Path, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A fresh tab; when the test fails, a screenshot of it lands in test-output/browser/."""
    tab = browser_context.new_page()
    yield tab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        tab.screenshot(path=output_dir / f"FAILED-{request.node.name}.png", full_page=True)
    tab.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
