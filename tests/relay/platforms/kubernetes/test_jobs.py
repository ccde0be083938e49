"""What a test Job's container runs: the command, then its JUnit XML through the log (all that
leaves a pod), with the command's exit code kept. Run here by a real /bin/sh and pytest, as the
container would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from relay.junit import parse_report
from relay.platforms.kubernetes import KubeSpec
from relay.platforms.kubernetes.jobs import (
    REPORT,
    ClusterTests,
    job,
    reporting_command,
    split_report,
)
from relay.platforms.kubernetes.objects import network_policy
from relay.registry import ImageRef

TESTS = """\
def test_passes():
    assert True

def test_fails():
    assert 1 == 2, "broken on purpose"
"""


def test_the_junit_report_travels_through_the_log_and_the_exit_code_is_kept(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_it.py").write_text(TESTS)
    argv = reporting_command([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"])
    script = argv[2].replace(str(REPORT), str(tmp_path / "report.xml"))

    ran = subprocess.run(
        ["/bin/sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )

    assert ran.returncode == 1, "pytest's exit code, not the report printer's"
    output, report = split_report(ran.stdout)
    assert "1 failed, 1 passed" in output and "<testsuite" not in output
    cases = {case.name.rsplit("::", 1)[-1]: case.outcome for case in parse_report(report)}
    assert cases == {"test_passes": "passed", "test_fails": "failed"}


def test_a_log_without_a_report_is_left_whole() -> None:
    assert split_report("no junit here\n") == ("no junit here\n", b"")


def test_the_job_never_retries_and_only_the_test_rule_of_the_policies_selects_it() -> None:
    spec = ClusterTests("shop", "dev", "shop-dev", "orders", "integration-tests", "img", ["x"], {})
    rendered = job(spec, "orders-integration-tests-1")
    assert rendered["spec"]["backoffLimit"] == 0
    assert rendered["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    labels = rendered["spec"]["template"]["metadata"]["labels"]
    kube = KubeSpec(
        app="shop", environment="dev", namespace="shop-dev", service="orders",
        image=ImageRef.parse("127.0.0.1:5000/shop/orders@sha256:" + "a" * 64), commit="c",
        tree="t", port=8002, health="/healthz", strategy="rolling", dependents=("web",),
    )  # fmt: skip
    policy = network_policy(kube)
    selected = policy["spec"]["podSelector"]["matchLabels"]
    assert not selected.items() <= labels.items(), "the service's own policy must not hold it"
    admitted = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert admitted.items() <= labels.items(), "the service admits its tests"
