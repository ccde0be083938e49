"""Stage environments, built on the real Docker engine of the stack and reused by tag.

Every image here is built on a base that carries a label unique to this module; images inherit
their parent's labels, so the teardown finds and removes all of them, including the
intermediate images a failed build leaves behind. The pure tests (`setup_inputs`, `setup_tag`)
run without the stack.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import docker
import pytest
from docker.errors import APIError, ImageNotFound

from relay.errors import StageFailed, TerminalError
from relay.stages import (
    BUILT_SECONDS_LABEL,
    run_in_container,
    setup_image,
    setup_inputs,
    setup_tag,
    target_image,
)

stack = pytest.mark.stack

RUN_ID = uuid.uuid4().hex[:10]
RUN_LABEL = "relay.test.stages-run"
REPO = f"relay-stage-test/image-{RUN_ID}"
# Writes when it ran and what it read: a second run would change the first part.
STAMP = (
    "import sys, time; "
    "open('/stamp', 'w').write(repr(time.time()) + ' ' + open(sys.argv[1]).read().strip())"
)
STAMP_SETUP = ["python3", "-c", STAMP, "requirements.txt"]


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"], timeout=120)) as c:
        yield c


@pytest.fixture(scope="module")
def base(client: docker.DockerClient) -> Iterator[str]:
    """python:3.11-slim with this module's label; every test image is built on it."""
    tag = f"{REPO}:base"
    dockerfile = f"FROM python:3.11-slim\nLABEL {RUN_LABEL}={RUN_ID}\n".encode()
    try:
        client.images.build(
            fileobj=io.BytesIO(dockerfile), tag=tag, pull=False, network_mode="host", rm=True
        )
        yield tag
    finally:
        remove_module_images(client)


def remove_module_images(client: docker.DockerClient) -> None:
    """Remove every image carrying this module's label, children before parents."""
    for _ in range(20):
        images = client.images.list(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"})
        if not images:
            return
        for image in sorted(images, key=lambda i: str(i.attrs["Created"]), reverse=True):
            with contextlib.suppress(APIError):  # a parent whose child is not gone yet
                client.images.remove(image.id, force=True)
    pytest.fail(f"images labelled {RUN_LABEL}={RUN_ID} could not be removed")


def exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


def read_file(client: docker.DockerClient, image: str, path: str, source: Path) -> str:
    result = run_in_container(client, image, ["cat", path], source, timeout=30)
    assert result.ok, result.output
    return result.output


# --- setup_image --------------------------------------------------------------------------------


@stack
def test_setup_runs_once_and_again_only_when_an_input_changes(
    client: docker.DockerClient, base: str, tmp_path: Path
) -> None:
    (tmp_path / "requirements.txt").write_text(f"first-{RUN_ID}\n")
    base_id = client.images.get(base).id
    inputs = setup_inputs(STAMP_SETUP, tmp_path)
    assert inputs == {"requirements.txt": f"first-{RUN_ID}\n".encode()}
    tag = setup_tag(REPO, base_id, STAMP_SETUP, inputs)

    first = setup_image(client, base, STAMP_SETUP, inputs, tag)
    assert (first.image, first.cached) == (tag, False) and first.built_seconds > 0
    built_id = client.images.get(tag).id
    stamp = read_file(client, tag, "/stamp", tmp_path)
    assert stamp.endswith(f" first-{RUN_ID}")  # the setup read its input, in /src

    again = setup_image(client, base, STAMP_SETUP, inputs, tag)
    assert (again.image, again.cached) == (tag, True)
    assert again.built_seconds == first.built_seconds
    assert client.images.get(tag).id == built_id
    assert read_file(client, tag, "/stamp", tmp_path) == stamp  # nothing ran again

    (tmp_path / "requirements.txt").write_text(f"second-{RUN_ID}\n")
    changed_inputs = setup_inputs(STAMP_SETUP, tmp_path)
    changed_tag = setup_tag(REPO, base_id, STAMP_SETUP, changed_inputs)
    assert changed_tag != tag
    changed = setup_image(client, base, STAMP_SETUP, changed_inputs, changed_tag)
    assert not changed.cached
    changed_stamp = read_file(client, changed_tag, "/stamp", tmp_path)
    assert changed_stamp.endswith(f" second-{RUN_ID}") and changed_stamp != stamp


@stack
def test_a_failing_setup_names_its_command_and_shows_its_output(
    client: docker.DockerClient, base: str, tmp_path: Path
) -> None:
    setup = ["python3", "-c", "print('no matching distribution for orders-sdk'); exit(4)"]
    tag = setup_tag(REPO, client.images.get(base).id, setup, {})
    with pytest.raises(StageFailed) as err:
        setup_image(client, base, setup, {}, tag)
    message = str(err.value)
    assert f"setup {' '.join(setup)!r} on {base} failed" in message
    assert "no matching distribution for orders-sdk" in message
    assert not exists(client, tag)


@pytest.fixture
def loopback_server() -> Iterator[str]:
    """An HTTP server on the loopback only, standing in for a package index; yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"package from the index")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    finally:
        server.shutdown()
        server.server_close()


@stack
def test_the_setup_has_the_network_it_installs_from(
    client: docker.DockerClient, base: str, tmp_path: Path, loopback_server: str
) -> None:
    fetch = (
        "import sys, urllib.request; "
        "open('/fetched', 'wb').write(urllib.request.urlopen(sys.argv[1], timeout=5).read())"
    )
    setup = ["python3", "-c", fetch, loopback_server]
    tag = setup_tag(REPO, client.images.get(base).id, setup, {})
    setup_image(client, base, setup, {}, tag)
    assert read_file(client, tag, "/fetched", tmp_path) == "package from the index"


@stack
def test_without_a_setup_command_the_base_is_labelled_and_reused(
    client: docker.DockerClient, base: str
) -> None:
    tag = setup_tag(REPO, client.images.get(base).id, None, {})
    first = setup_image(client, base, None, {}, tag)
    assert not first.cached and first.built_seconds > 0
    assert float(client.images.get(tag).labels[BUILT_SECONDS_LABEL]) == first.built_seconds
    assert setup_image(client, base, None, {}, tag).cached


@stack
def test_a_missing_base_image_is_named(client: docker.DockerClient) -> None:
    absent = f"{REPO}:no-such-base"
    with pytest.raises(StageFailed, match=f"the base image '{absent}' of the stage environment"):
        setup_image(client, absent, ["true"], {}, f"{REPO}:never")


# --- target_image -------------------------------------------------------------------------------


DOCKERFILE = """\
FROM {base} AS base
RUN echo base > /base.txt

FROM base AS test
ARG GREETING=unset
RUN echo "$GREETING" > /test-tools.txt

FROM base AS runtime
CMD ["python3"]

# Last: the legacy builder builds every stage before the target, used or not.
FROM base AS broken
RUN python3 -c "print('the build broke here'); raise SystemExit(2)"
"""


@pytest.fixture(scope="module")
def context(base: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("context")
    (directory / "Dockerfile.multi").write_text(DOCKERFILE.format(base=base))
    return directory


@stack
def test_a_target_is_built_once_with_what_the_final_stage_lacks(
    client: docker.DockerClient, context: Path
) -> None:
    tag = f"{REPO}:test-target"
    labels = {"org.relay.service": "orders"}
    build = {"GREETING": f"hello-{RUN_ID}"}
    first = target_image(client, context, "Dockerfile.multi", "test", tag, build, labels)
    assert (first.image, first.cached) == (tag, False) and first.built_seconds > 0
    image = client.images.get(tag)
    assert float(image.labels[BUILT_SECONDS_LABEL]) == first.built_seconds
    assert image.labels["org.relay.service"] == "orders"
    assert read_file(client, tag, "/test-tools.txt", context) == f"hello-{RUN_ID}\n"

    again = target_image(client, context, "Dockerfile.multi", "test", tag, build, labels)
    assert again.cached and again.built_seconds == first.built_seconds > 0
    assert client.images.get(tag).id == image.id
    assert float(client.images.get(tag).labels[BUILT_SECONDS_LABEL]) > 0

    runtime = target_image(client, context, "Dockerfile.multi", "runtime", f"{REPO}:runtime")
    lacks = run_in_container(client, runtime.image, ["cat", "/test-tools.txt"], context)
    assert not lacks.ok and "No such file" in lacks.output
    assert read_file(client, runtime.image, "/base.txt", context) == "base\n"


@stack
def test_a_missing_target_names_the_stages_there_are(
    client: docker.DockerClient, context: Path
) -> None:
    tag = f"{REPO}:lint"
    with pytest.raises(StageFailed, match="its stages are: base, test, runtime, broken") as err:
        target_image(client, context, "Dockerfile.multi", "lint", tag)
    assert "has no stage 'lint'" in str(err.value)
    assert not exists(client, tag)


@stack
def test_a_failed_target_build_shows_the_log_tail(
    client: docker.DockerClient, context: Path
) -> None:
    tag = f"{REPO}:broken"
    with pytest.raises(StageFailed, match="target 'broken' of") as err:
        target_image(client, context, "Dockerfile.multi", "broken", tag)
    assert "the build broke here" in str(err.value)
    assert not exists(client, tag)


@stack
def test_a_missing_dockerfile_is_a_configuration_error(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    with pytest.raises(TerminalError, match="there is no Dockerfile at"):
        target_image(client, tmp_path, "Dockerfile", "test", f"{REPO}:no-dockerfile")


# --- setup_inputs (pure) ------------------------------------------------------------------------


@pytest.fixture
def service(tmp_path: Path) -> Path:
    """A service directory with requirement files, links in and out, and a file outside."""
    (tmp_path / "outside.txt").write_text("outside")
    directory = tmp_path / "service"
    (directory / "sub").mkdir(parents=True)
    (directory / "requirements.txt").write_text("requests\n")
    (directory / "constraints.txt").write_text("requests<3\n")
    (directory / "sub" / "dev.txt").write_text("pytest\n")
    (directory / "link-in.txt").symlink_to("requirements.txt")
    (directory / "link-out.txt").symlink_to(tmp_path / "outside.txt")
    return directory


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (["-r", "requirements.txt"], {"requirements.txt": b"requests\n"}),
        (["--requirement=requirements.txt"], {"requirements.txt": b"requests\n"}),
        (["-rrequirements.txt", "-cconstraints.txt"], {"requirements.txt", "constraints.txt"}),
        (
            ["--constraint", "constraints.txt", "-r", "sub/dev.txt"],
            {"constraints.txt", "sub/dev.txt"},
        ),
        (["-r", "./sub/../requirements.txt"], {"requirements.txt"}),
        (["-r", "link-in.txt"], {"link-in.txt": b"requests\n"}),  # where the command reads it
        (["-r", "link-out.txt"], {}),  # resolves outside the directory
        (["-r", "../outside.txt"], {}),
        (["-r", "{outside}"], {}),  # an absolute path outside
        (["."], {}),  # a directory is not a file input
        (["sub"], {}),
        (["requests==2.32", "-rmissing.txt", "--index-url=http://127.0.0.1:9/"], {}),
        (["-c", "x" * 300, "nul\0byte"], {}),  # a script, not a file name
    ],
)
def test_setup_inputs_are_the_files_the_command_names(
    service: Path, tokens: list[str], expected: dict[str, bytes] | set[str]
) -> None:
    outside = str(service.parent / "outside.txt")
    argv = ["pip", "install", *(token.replace("{outside}", outside) for token in tokens)]
    found = setup_inputs(argv, service)
    if isinstance(expected, set):
        assert set(found) == expected
    else:
        assert found == expected


def test_setup_inputs_add_the_extra_files(service: Path) -> None:
    found = setup_inputs(["pip", "install", "-r", "requirements.txt"], service, ["sub/dev.txt"])
    assert found == {"requirements.txt": b"requests\n", "sub/dev.txt": b"pytest\n"}


def test_setup_inputs_name_every_extra_file_that_is_not_there(service: Path) -> None:
    extra = ["sub/missing.txt", "../outside.txt", "link-out.txt", "sub"]
    with pytest.raises(TerminalError) as err:
        setup_inputs(["true"], service, extra)
    for path in extra:
        assert repr(path) in str(err.value)


# --- setup_tag (pure) ---------------------------------------------------------------------------


SETUP = ["pip", "install", "-r", "requirements.txt"]
INPUTS = {"requirements.txt": b"requests\n", "constraints.txt": b"requests<3\n"}


def test_setup_tag_is_a_deterministic_hash() -> None:
    tag = setup_tag("relay-stage/shop-orders", "sha256:aaa", SETUP, INPUTS)
    assert re.fullmatch(r"relay-stage/shop-orders:setup-[0-9a-f]{24}", tag)
    reordered = dict(reversed(list(INPUTS.items())))
    assert setup_tag("relay-stage/shop-orders", "sha256:aaa", list(SETUP), reordered) == tag


@pytest.mark.parametrize(
    ("base_id", "setup", "inputs"),
    [
        ("sha256:bbb", SETUP, INPUTS),
        ("sha256:aaa", [*SETUP, "--no-deps"], INPUTS),
        ("sha256:aaa", None, INPUTS),
        ("sha256:aaa", [], INPUTS),
        ("sha256:aaa", SETUP, {**INPUTS, "requirements.txt": b"requests==2.32\n"}),
        ("sha256:aaa", SETUP, {"requirements.txt": b"requests\n"}),
        ("sha256:aaa", SETUP, {"reqs.txt": b"requests\n", "constraints.txt": b"requests<3\n"}),
    ],
)
def test_setup_tag_changes_with_anything_the_setup_depends_on(
    base_id: str, setup: list[str] | None, inputs: dict[str, bytes]
) -> None:
    original = setup_tag("relay-stage/shop-orders", "sha256:aaa", SETUP, INPUTS)
    assert setup_tag("relay-stage/shop-orders", base_id, setup, inputs) != original
