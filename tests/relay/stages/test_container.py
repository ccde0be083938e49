"""Stage commands in containers, against the real Docker engine of the stack.

The pure tests (`missing_tool`, request checks) run without the stack; every other test is
marked `stack`.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import ImageNotFound

from relay.errors import StageFailed, TerminalError
from relay.stages import (
    OUTPUT_LIMIT,
    REPORT_DIR,
    SOURCE_DIR,
    StageRun,
    missing_tool,
    run_in_container,
)
from relay.stages.host import run_command

stack = pytest.mark.stack

BASE = "python:3.11-slim"
# The image's own entry: a stage command run through it would print "wrapped" and exit 9.
USER_IMAGE_DOCKERFILE = f"""FROM {BASE}
USER 1234:1234
ENTRYPOINT ["sh", "-c", "echo wrapped; exit 9", "--"]
"""


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"], timeout=60)) as c:
        yield c


@pytest.fixture(scope="module")
def user_image(client: docker.DockerClient) -> Iterator[str]:
    """An image like a service's test stage: a non-root USER and an ENTRYPOINT of its own."""
    tag = f"relay-stage-test/user-{uuid.uuid4().hex[:8]}:1"
    dockerfile = io.BytesIO(USER_IMAGE_DOCKERFILE.encode())
    try:
        client.images.build(fileobj=dockerfile, tag=tag, pull=False, network_mode="host", rm=True)
        yield tag
    finally:
        with contextlib.suppress(ImageNotFound):
            client.images.remove(tag, force=True)


@pytest.fixture
def hint() -> Iterator[str]:
    """A name_hint unique to the test; afterwards no container with it may be left behind."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as c:
        filters = {"label": ["relay.stage=true", f"relay.stage.name={name}"]}
        left = c.containers.list(all=True, filters=filters)
    assert not left, f"stage containers left behind: {[x.name for x in left]}"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A service directory: a module, a data file, an executable script, a subfolder."""
    service = tmp_path / "service"
    (service / "pkg").mkdir(parents=True)
    (service / "pkg" / "__init__.py").write_text("VALUE = 'from the sources'\n")
    (service / "data.txt").write_text("original\n")
    script = service / "run.sh"
    script.write_text("#!/bin/sh\necho script ran as $(id -u)\n")
    script.chmod(0o755)
    return service


def run(
    client: docker.DockerClient, image: str, code: str, source: Path, hint: str, **options: Any
) -> StageRun:
    """`python3 -c code` in `image`, bounded to a minute."""
    argv = ["python3", "-c", code]
    return run_in_container(client, image, argv, source, name_hint=hint, timeout=60, **options)


# --- what comes back ----------------------------------------------------------------------------


@stack
def test_output_and_exit_code_come_back_and_a_failure_is_not_raised(
    client: docker.DockerClient, source: Path, hint: str
) -> None:
    code = (
        "import sys; print('to stdout', flush=True); print('to stderr', file=sys.stderr);"
        "sys.exit(3)"
    )
    result = run(client, BASE, code, source, hint)
    assert result.exit_code == 3 and not result.ok
    # Both streams come back; their order across streams is the engine's, not guaranteed.
    assert sorted(result.output.splitlines()) == ["to stderr", "to stdout"]
    assert result.image == BASE and result.argv == ["python3", "-c", code]
    assert result.files == {} and result.seconds > 0


@stack
def test_argv_runs_without_a_shell(client: docker.DockerClient, source: Path, hint: str) -> None:
    argv = ["echo", "$HOME", "&&", "false", ";", "id"]
    result = run_in_container(client, BASE, argv, source, name_hint=hint, timeout=60)
    assert result.ok and result.output.strip() == "$HOME && false ; id"


@stack
def test_output_keeps_only_its_tail(client: docker.DockerClient, source: Path, hint: str) -> None:
    code = "print('x' * 50000 + 'END')"
    result = run(client, BASE, code, source, hint)
    assert len(result.output) == OUTPUT_LIMIT and result.output.endswith("END\n")


# --- what goes in -------------------------------------------------------------------------------


@stack
def test_env_reaches_the_command_and_the_workers_environment_does_not(
    client: docker.DockerClient, source: Path, hint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_TEST_WORKER_SECRET", "do-not-leak")
    code = "import os, json; print(json.dumps(dict(os.environ)))"
    result = run(client, BASE, code, source, hint, env={"ORDERS_URL": "http://orders"})
    seen = json.loads(result.output)
    assert seen["ORDERS_URL"] == "http://orders"
    assert "RELAY_TEST_WORKER_SECRET" not in seen and "do-not-leak" not in result.output
    assert "DOCKER_HOST" not in seen  # nor the way to the engine
    assert os.environ["RELAY_TEST_WORKER_SECRET"] == "do-not-leak"  # the test did set it


READ_PLANTED = """
import os
for name in ("abs-link", "rel-link", "dir-link/secret.txt"):
    path = os.path.join("/src", name)
    try:
        print(name, "read", open(path).read().strip())
    except OSError as exc:
        print(name, "unreadable", type(exc).__name__)
print("abs-link is a link:", os.path.islink("/src/abs-link"))
"""


@stack
def test_a_file_outside_the_sources_does_not_reach_the_container(
    client: docker.DockerClient, tmp_path: Path, hint: str
) -> None:
    token = f"worker-secret-{uuid.uuid4().hex}"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(token)
    service = tmp_path / "service"
    service.mkdir()
    (service / "abs-link").symlink_to(outside / "secret.txt")
    (service / "rel-link").symlink_to("../outside/secret.txt")
    (service / "dir-link").symlink_to(outside)
    argv = ["python3", "-c", READ_PLANTED]

    # On the worker the same command does read it: the test can tell a leak.
    on_host = run_command(
        [sys.executable, "-c", READ_PLANTED.replace("/src", str(service))], service
    )
    assert on_host.output.count(token) == 3

    inside = run_in_container(client, BASE, argv, service, name_hint=hint, timeout=60)
    assert inside.ok, inside.output
    assert token not in inside.output
    assert inside.output.count("unreadable") == 3
    assert "abs-link is a link: True" in inside.output  # copied as a link, not as its target


@stack
def test_runs_as_the_images_user_who_can_read_and_write_the_copy(
    client: docker.DockerClient, user_image: str, source: Path, hint: str
) -> None:
    code = (
        "import os, subprocess, pkg; print('uid', os.getuid()); print(pkg.VALUE);"
        "open('data.txt', 'a').write('appended\\n');"
        "open('pkg/new.txt', 'w').write('new');"
        f"open('{REPORT_DIR}/report.xml', 'w').write('<ok/>');"
        "print(subprocess.run(['./run.sh'], capture_output=True, text=True).stdout);"
        "print('cache', os.listdir('pkg/__pycache__'))"  # the import above wrote bytecode
    )
    collect = [f"{SOURCE_DIR}/data.txt", f"{SOURCE_DIR}/pkg/new.txt", f"{REPORT_DIR}/report.xml"]
    result = run(client, user_image, code, source, hint, collect=collect)
    assert result.ok, result.output
    assert "uid 1234" in result.output and "from the sources" in result.output
    assert "script ran as 1234" in result.output  # the exec bit survived the copy
    assert "cache ['__init__.cpython-311.pyc']" in result.output
    assert result.files == {
        f"{SOURCE_DIR}/data.txt": b"original\nappended\n",
        f"{SOURCE_DIR}/pkg/new.txt": b"new",
        f"{REPORT_DIR}/report.xml": b"<ok/>",
    }
    assert (source / "data.txt").read_text() == "original\n"  # the worker's checkout is not
    assert not (source / "pkg" / "__pycache__").exists()


@stack
def test_the_images_entrypoint_does_not_wrap_the_command(
    client: docker.DockerClient, user_image: str, source: Path, hint: str
) -> None:
    result = run(client, user_image, "print('ran as given')", source, hint)
    assert result.ok and result.output == "ran as given\n"


# --- what comes out -----------------------------------------------------------------------------


@stack
def test_written_files_are_collected_and_missing_ones_are_absent(
    client: docker.DockerClient, source: Path, hint: str
) -> None:
    code = (
        "import os; os.makedirs('out');"
        f"open('{REPORT_DIR}/junit.xml', 'wb').write(bytes(range(256)));"
        "open('out/findings.sarif', 'w').write('{}');"
        f"os.symlink('/etc/passwd', '{REPORT_DIR}/link.xml')"
    )
    collect = [
        f"{REPORT_DIR}/junit.xml",
        f"{SOURCE_DIR}/out/findings.sarif",
        f"{REPORT_DIR}/never-written.xml",
        f"{REPORT_DIR}/link.xml",  # a link to elsewhere is not a report
        f"{SOURCE_DIR}/out",  # a directory is not a file
    ]
    result = run(client, BASE, code, source, hint, collect=collect)
    assert result.ok, result.output
    assert result.files == {
        f"{REPORT_DIR}/junit.xml": bytes(range(256)),
        f"{SOURCE_DIR}/out/findings.sarif": b"{}",
    }


# --- the network --------------------------------------------------------------------------------


@pytest.fixture
def loopback_server() -> Iterator[int]:
    """An HTTP server on the worker's loopback only; yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello from the worker")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


FETCH = """
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())
except OSError as exc:
    print("unreachable", exc)
"""


@stack
def test_no_network_unless_asked(
    client: docker.DockerClient, source: Path, hint: str, loopback_server: int
) -> None:
    argv = ["python3", "-c", FETCH, f"http://127.0.0.1:{loopback_server}/"]
    isolated = run_in_container(client, BASE, argv, source, name_hint=hint, timeout=30)
    assert "unreachable" in isolated.output and "hello" not in isolated.output
    host = run_in_container(client, BASE, argv, source, name_hint=hint, timeout=30, network="host")
    assert host.output.strip() == "hello from the worker"


# --- failures -----------------------------------------------------------------------------------


@stack
def test_a_command_past_its_timeout_is_killed(
    client: docker.DockerClient, source: Path, hint: str
) -> None:
    started = time.monotonic()
    argv = ["python3", "-c", "import time; print('started', flush=True); time.sleep(60)"]
    with pytest.raises(StageFailed, match=r"did not finish within 2 s in the container of") as err:
        run_in_container(client, BASE, argv, source, name_hint=hint, timeout=2)
    assert time.monotonic() - started < 20
    assert BASE in str(err.value) and "started" in str(err.value)
    # the `hint` fixture checks that the container is gone


@stack
def test_a_missing_executable_is_named(
    client: docker.DockerClient, source: Path, hint: str
) -> None:
    expected = (
        "'no-such-tool' is not installed in the stage container (python:3.11-slim); "
        "command: no-such-tool --version"
    )
    with pytest.raises(StageFailed) as err:
        run_in_container(client, BASE, ["no-such-tool", "--version"], source, name_hint=hint)
    assert str(err.value) == expected
    with pytest.raises(StageFailed, match="'/opt/nope' is not installed"):
        run_in_container(client, BASE, ["/opt/nope"], source, name_hint=hint)
    (source / "not-executable.sh").write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(StageFailed, match="'./not-executable.sh' cannot be executed"):
        run_in_container(client, BASE, ["./not-executable.sh"], source, name_hint=hint)


@stack
def test_a_missing_image_is_named(client: docker.DockerClient, source: Path, hint: str) -> None:
    image = f"relay-stage-test/absent-{uuid.uuid4().hex[:8]}:1"
    with pytest.raises(StageFailed, match=f"the stage image '{image}' does not exist"):
        run_in_container(client, image, ["true"], source, name_hint=hint)


@stack
def test_a_tool_missing_from_the_image_is_recognised(
    client: docker.DockerClient, source: Path, hint: str
) -> None:
    result = run_in_container(client, BASE, ["python3", "-m", "pytest"], source, name_hint=hint)
    assert not result.ok and missing_tool(result) == "pytest"
    shell = run_in_container(client, BASE, ["sh", "-c", "bandit -r ."], source, name_hint=hint)
    assert shell.exit_code == 127 and missing_tool(shell) == "bandit"


def test_a_bad_request_reports_every_problem_before_any_container(tmp_path: Path) -> None:
    # An engine that does not exist: the request is refused before anything is asked of it.
    nowhere = docker.DockerClient(base_url="unix:///nonexistent.sock", version="1.41")
    with closing(nowhere), pytest.raises(TerminalError) as err:
        run_in_container(nowhere, BASE, [], tmp_path / "absent", collect=["reports/x.xml"])
    message = str(err.value)
    assert "the command is empty" in message
    assert "is not a directory" in message
    assert "'reports/x.xml' is not an absolute path" in message


# --- missing_tool (pure) ------------------------------------------------------------------------


def stage_run(output: str, exit_code: int = 1) -> StageRun:
    return StageRun(["x"], exit_code, output, 0.1, {}, BASE)


@pytest.mark.parametrize(
    ("output", "tool"),
    [
        ("/usr/local/bin/python3: No module named pytest\n", "pytest"),
        ("ModuleNotFoundError: No module named 'pytest'\n", "pytest"),
        ("Traceback...\nModuleNotFoundError: No module named 'yaml'", "yaml"),
        ("/usr/bin/python3: No module named pip_audit", "pip_audit"),
        ("sh: bandit: not found\n", "bandit"),
        ("/bin/sh: 1: bandit: not found\n", "bandit"),
        ("bash: line 1: semgrep: command not found\n", "semgrep"),
        ("bandit: command not found", "bandit"),
        ("bash: go: command not found", "go"),
        ("3 passed in 0.2s\n", None),
        ("", None),
        ("GET /missing: 404 page not found\n", None),
        ("E   AssertionError: item: not found in the cart\n", None),
    ],
)
def test_missing_tool(output: str, tool: str | None) -> None:
    assert missing_tool(stage_run(output)) == tool


def test_stage_run_reads_like_a_command_result() -> None:
    result = stage_run("\n".join(str(n) for n in range(100)), exit_code=0)
    assert result.ok and result.tail(3) == "97\n98\n99"
    assert not stage_run("boom").ok


@stack
def test_the_sources_keep_their_path_in_the_repository_under_src(
    client: docker.DockerClient, source: Path, hint: str
) -> None:
    """A test that finds its service by its directory's name (as the shop's conftest does)."""
    code = "import os, pkg; print(os.getcwd(), os.path.basename(os.getcwd()), pkg.VALUE)"
    result = run(client, BASE, code, source, hint, workdir=f"{SOURCE_DIR}/services/orders")
    assert result.ok, result.output
    assert result.output.strip() == "/src/services/orders orders from the sources"


@pytest.mark.parametrize("workdir", ["/tmp/x", "/src/../etc", "src/relative", "/srcx"])
def test_a_workdir_outside_src_is_refused(workdir: str, source: Path) -> None:
    with pytest.raises(TerminalError, match=f"workdir '{workdir}'"):
        run_in_container(None, BASE, ["true"], source, workdir=workdir)  # type: ignore[arg-type]
