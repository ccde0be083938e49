"""Reading Dockerfiles (pure, table tests): instructions, stages, and the base images a build
starts from, with ARGs and build arguments resolved as Docker resolves them."""

from __future__ import annotations

import re

import pytest

from relay.dockerfile import (
    Instruction,
    arg_default,
    base_images,
    expand,
    instructions,
    stage_names,
)
from relay.errors import TerminalError

MULTI_STAGE = """\
ARG PYTHON=python:3.11-slim
FROM ${PYTHON} AS deps
RUN pip install -r requirements.txt
FROM golang:1.22 AS tools
RUN go build ./cmd/tool
FROM deps AS test
COPY --from=tools /go/bin/tool /usr/local/bin/
RUN pytest
FROM busybox:1.36 AS docs
FROM deps AS final
COPY --from=ghcr.io/astral-sh/uv:0.4 /uv /bin/uv
USER 65534
"""


def test_instructions_join_continuations_and_skip_comments() -> None:
    text = "# syntax\nFROM python:3.11-slim \\\n  AS build\nRUN a \\\n# note\n  && b\n"

    assert instructions(text) == [
        Instruction(2, "FROM", "python:3.11-slim  AS build"),
        Instruction(4, "RUN", "a  && b"),
    ]


@pytest.mark.parametrize(
    ("argument", "parsed"),
    [
        ("BASE=python:3.11-slim", ("BASE", "python:3.11-slim")),
        ('BASE="python:3.11-slim"', ("BASE", "python:3.11-slim")),
        ("BASE=", ("BASE", "")),
        ("BASE", ("BASE", None)),
    ],
)
def test_arg_default(argument: str, parsed: tuple[str, str | None]) -> None:
    assert arg_default(argument) == parsed


@pytest.mark.parametrize(
    ("value", "expanded"),
    [
        ("$A", "x"),
        ("${A}:1", "x:1"),
        ("${A:-other}", "x"),  # the default is not read: `${A:-y}` is `${A}`
        ("${B:-other}", None),
        ("$B", None),
        ("plain", "plain"),
    ],
)
def test_expand(value: str, expanded: str | None) -> None:
    assert expand(value, {"A": "x"}) == expanded


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("FROM python:3.11-slim\n", []),
        ("FROM a:1 AS Build\nFROM b:1 as test\nFROM build\n", ["build", "test"]),
        ("FROM --platform=linux/amd64 a:1 AS x\n", ["x"]),
        (MULTI_STAGE, ["deps", "tools", "test", "docs", "final"]),
    ],
)
def test_stage_names(text: str, names: list[str]) -> None:
    assert stage_names(text) == names


@pytest.mark.parametrize(
    ("text", "build_args", "images"),
    [
        pytest.param("FROM python:3.11-slim\n", None, ["python:3.11-slim"], id="plain"),
        pytest.param(
            "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\n",
            None,
            ["python:3.11-slim"],
            id="global-arg-default",
        ),
        pytest.param(
            "ARG REGISTRY=127.0.0.1:5000\nARG TAG=3.11\nFROM $REGISTRY/python:${TAG}-slim\n",
            None,
            ["127.0.0.1:5000/python:3.11-slim"],
            id="two-args-both-forms",
        ),
        pytest.param(
            "ARG PY=3.11\nARG BASE=python:${PY}-slim\nFROM ${BASE}\n",
            {"PY": "3.12"},
            ["python:3.12-slim"],
            id="default-built-from-an-earlier-arg",
        ),
        pytest.param(
            "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\n",
            {"BASE_IMAGE": "python:3.12-slim"},
            ["python:3.12-slim"],
            id="build-arg-overrides-default",
        ),
        pytest.param(
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n",
            {"BASE_IMAGE": "python:3.12-slim"},
            ["python:3.12-slim"],
            id="build-arg-gives-arg-without-default",
        ),
        pytest.param(
            "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\n",
            {"OTHER": "x", "GIT_SHA": "c0ffee"},
            ["python:3.11-slim"],
            id="undeclared-build-args-ignored",
        ),
        pytest.param(
            "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE:-python:3.10-slim}\n",
            None,
            ["python:3.11-slim"],
            id="colon-dash-form-reads-the-arg",
        ),
        pytest.param("FROM scratch\nCOPY app /app\n", None, [], id="scratch-is-no-image"),
        pytest.param(
            "FROM python:3.11 AS Build\nFROM SCRATCH\nCOPY --from=build /a /a\n",
            None,
            ["python:3.11"],
            id="scratch-case-insensitive",
        ),
        pytest.param(
            "FROM python:3.11 As build\nFROM BUILD aS test\nFROM build\n",
            None,
            ["python:3.11"],
            id="stage-names-and-AS-case-insensitive",
        ),
        pytest.param(
            "ARG STAGE=build\nFROM python:3.11 AS build\nFROM ${STAGE}\n",
            None,
            ["python:3.11"],
            id="arg-naming-a-stage",
        ),
        pytest.param(
            "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nFROM alpine:3.20\n",
            None,
            ["golang:1.22", "alpine:3.20"],
            id="flags-left-out",
        ),
        pytest.param(
            "FROM python:3.11-slim AS a\nFROM python:3.11-slim AS b\nFROM alpine:3.20\n"
            "FROM python:3.11-slim\n",
            None,
            ["python:3.11-slim", "alpine:3.20"],
            id="dedup-keeps-first-order",
        ),
        pytest.param(
            "FROM python:3.11-slim\nCOPY --from=ghcr.io/astral-sh/uv:0.4 /uv /bin/\n"
            "COPY --from=ghcr.io/astral-sh/uv:0.4 /uvx /bin/\n",
            None,
            ["python:3.11-slim", "ghcr.io/astral-sh/uv:0.4"],
            id="copy-from-an-image-counts",
        ),
        pytest.param("FROM build AS build\n", None, ["build"], id="own-name-is-an-image"),
        pytest.param(
            MULTI_STAGE,
            None,
            [
                "python:3.11-slim",
                "golang:1.22",
                "busybox:1.36",
                "ghcr.io/astral-sh/uv:0.4",
            ],
            id="multi-stage-no-target-builds-all",
        ),
    ],
)
def test_base_images(text: str, build_args: dict[str, str] | None, images: list[str]) -> None:
    assert base_images(text, build_args) == images


@pytest.mark.parametrize(
    ("target", "images"),
    [
        ("deps", ["python:3.11-slim"]),
        ("tools", ["golang:1.22"]),
        ("TEST", ["python:3.11-slim", "golang:1.22"]),  # FROM deps, COPY --from=tools
        ("docs", ["busybox:1.36"]),
        ("final", ["python:3.11-slim", "ghcr.io/astral-sh/uv:0.4"]),
    ],
)
def test_a_target_needs_only_its_stages(target: str, images: list[str]) -> None:
    assert base_images(MULTI_STAGE, target=target) == images


@pytest.mark.parametrize(
    ("text", "target", "images"),
    [
        pytest.param(
            "FROM golang:1.22\nFROM alpine:3.20 AS final\nCOPY --from=0 /x /x\n",
            "final",
            ["golang:1.22", "alpine:3.20"],
            id="copy-from-stage-index",
        ),
        pytest.param(
            "FROM golang:1.22 AS a\nFROM a AS b\nFROM b AS c\nFROM alpine:3.20\n",
            "c",
            ["golang:1.22"],
            id="transitive-from",
        ),
        pytest.param(
            "ARG BASE\nFROM ${BASE} AS unused\nFROM alpine:3.20 AS final\n",
            "final",
            ["alpine:3.20"],
            id="an-unneeded-stage-may-be-unresolvable",
        ),
    ],
)
def test_target_pruning(text: str, target: str, images: list[str]) -> None:
    assert base_images(text, target=target) == images


@pytest.mark.parametrize(
    ("text", "build_args", "line", "names"),
    [
        pytest.param(
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n", None, 2, "BASE_IMAGE", id="no-default"
        ),
        pytest.param("FROM $BASE_IMAGE\n", None, 1, "BASE_IMAGE", id="never-declared"),
        pytest.param(
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE:-python:3.11-slim}\n",
            None,
            2,
            "BASE_IMAGE",
            id="colon-dash-default-not-read",
        ),
        pytest.param(
            # Docker: a build argument only sets an ARG the Dockerfile declares
            "FROM ${BASE_IMAGE}\n",
            {"BASE_IMAGE": "python:3.11-slim"},
            1,
            "BASE_IMAGE",
            id="build-arg-for-undeclared-arg",
        ),
        pytest.param(
            # only ARGs before the first FROM count in a FROM
            "FROM python:3.11 AS a\nARG NEXT=alpine:3.20\nFROM ${NEXT}\n",
            None,
            3,
            "NEXT",
            id="stage-arg-does-not-count",
        ),
    ],
)
def test_an_unresolvable_from_names_the_line_and_the_fix(
    text: str, build_args: dict[str, str] | None, line: int, names: str
) -> None:
    with pytest.raises(TerminalError) as raised:
        base_images(text, build_args, label="services/orders/Dockerfile")

    message = str(raised.value)
    assert message.startswith(f"services/orders/Dockerfile:{line}: FROM ")
    assert f"no value for the ARG {names}" in message
    assert "ARG BASE_IMAGE=python:3.11-slim" in message
    assert "build_args" in message


def test_every_unresolvable_from_is_reported_at_once() -> None:
    text = "FROM $A AS one\nFROM python:3.11\nFROM ${B}\n"

    with pytest.raises(TerminalError) as raised:
        base_images(text)

    lines = str(raised.value).splitlines()
    assert [line.split(": ")[0] for line in lines] == ["Dockerfile:1", "Dockerfile:3"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ARG BASE=\nFROM ${BASE}\n", "resolves to an empty name"),
        ("FROM\n", "FROM names no image"),
        (
            "ARG UV=ghcr.io/astral-sh/uv:0.4\nFROM alpine:3.20\nCOPY --from=${UV} /uv /uv\n",
            "write `FROM ${UV} AS <name>`",
        ),
    ],
)
def test_other_unbuildable_dockerfiles_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(TerminalError, match=rf"^Dockerfile:\d+: .*{re.escape(fragment)}"):
        base_images(text)


def test_an_unknown_target_lists_the_stages() -> None:
    with pytest.raises(TerminalError) as raised:
        base_images(MULTI_STAGE, target="prod", label="svc/Dockerfile")

    assert str(raised.value) == (
        "svc/Dockerfile: build target 'prod' is not a stage of the Dockerfile (its stages are "
        "deps, tools, test, docs, final); set the target to one of them, or name a stage "
        "`FROM <image> AS prod`"
    )
