"""Reading Dockerfiles, pure: instructions, ARG expansion, stages and base images.

Two readers need FROM resolved the way Docker resolves it: compliance (`relay.compliance` checks
every base image is pinned) and the image key (`relay.image_key` hashes the digests of the base
images). This module does no I/O; it reads the Dockerfile's text.

Docker's rules it follows:

* Only the ARGs declared before the first FROM (global ARGs) can be used in a FROM.
* A build argument overrides an ARG only when the Dockerfile declares that ARG; others are
  ignored (Docker warns that they were not consumed).
* `scratch` and the name of an earlier stage (`FROM base AS build`, then `FROM build`) are not
  images. Stage names are case-insensitive; so is `AS`.
* With a build target, a stage is built only when the target needs it: the stage it is built
  FROM and the stages it copies from (`COPY --from=<stage or index>`), transitively.

Not supported, being rare in service Dockerfiles: the `# escape=` parser directive, heredocs,
several ARGs in one instruction (`ARG A=1 B=2`), and the defaults in `${X:-default}` and
`${X:+alternative}`: `expand` reads both as `${X}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from relay.errors import TerminalError

__all__ = [
    "Instruction",
    "arg_default",
    "base_images",
    "expand",
    "instructions",
    "stage_names",
]

_FIX = (
    "give the ARG a default, such as `ARG BASE_IMAGE=python:3.11-slim`, "
    "or pass it in the service's `build_args`"
)


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: the line it starts on, its keyword (upper case) and the
    rest of it."""

    line: int
    keyword: str
    argument: str


def instructions(text: str) -> list[Instruction]:
    """A Dockerfile's instructions, continuation lines joined, comments left out."""
    found: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, argument = (pending + stripped).partition(" ")
        found.append(Instruction(start, keyword.upper(), argument.strip()))
        pending = ""
    return found


_VARIABLE = re.compile(r"\$\{(\w+)(?::?[-+][^}]*)?\}|\$(\w+)")


def expand(value: str, variables: Mapping[str, str]) -> str | None:
    """`value` with `$X` / `${X}` replaced from `variables`; None if one is unknown."""
    missing = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal missing
        name = match[1] or match[2]
        if name not in variables:
            missing = True
            return ""
        return variables[name]

    expanded = _VARIABLE.sub(substitute, value)
    return None if missing else expanded


def arg_default(argument: str) -> tuple[str, str | None]:
    """`ARG NAME=default` as `(NAME, default)`; the default is None when there is none."""
    name, equals, default = argument.partition("=")
    return name.strip(), default.strip().strip("\"'") if equals else None


def _missing(value: str, variables: Mapping[str, str]) -> list[str]:
    names = (match[1] or match[2] for match in _VARIABLE.finditer(value))
    return sorted({name for name in names if name not in variables})


def _from_words(argument: str) -> tuple[str | None, str | None]:
    """A FROM's source (as written) and its stage name (lower case), flags such as
    `--platform=...` left out."""
    words = [word for word in argument.split() if not word.startswith("--")]
    source = words[0] if words else None
    name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else None
    return source, name


def stage_names(text: str) -> list[str]:
    """The names of the Dockerfile's stages (`FROM ... AS <name>`), in order, in lower case as
    Docker compares them; unnamed stages have none."""
    names = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            _, name = _from_words(instruction.argument)
            if name is not None:
                names.append(name)
    return names


@dataclass
class _Stage:
    line: int
    name: str | None
    image: str | None = None  # the FROM's image; None for scratch, a stage, or a problem
    parent: int | None = None  # the earlier stage it is built FROM
    copies_from: list[int] = field(default_factory=list)  # stages it COPY --from's
    copied_images: list[str] = field(default_factory=list)  # images it COPY --from's
    problems: list[str] = field(default_factory=list)


def _global_args(found: list[Instruction], build_args: Mapping[str, str]) -> dict[str, str]:
    """The values of the ARGs declared before the first FROM: the build argument when one is
    given, else the default (itself expanded with the ARGs before it), else none."""
    variables: dict[str, str] = {}
    for instruction in found:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword != "ARG":
            continue
        name, default = arg_default(instruction.argument)
        if name in build_args:
            variables[name] = build_args[name]
        elif default is not None:
            value = expand(default, variables)
            if value is not None:
                variables[name] = value
    return variables


def _stages(text: str, build_args: Mapping[str, str], label: str) -> list[_Stage]:
    found = instructions(text)
    variables = _global_args(found, build_args)
    every_name: dict[str, int] = {}  # for COPY --from, which may name any stage
    for index, name in enumerate(_from_words(i.argument)[1] for i in found if i.keyword == "FROM"):
        if name is not None:
            every_name.setdefault(name, index)
    stages: list[_Stage] = []
    for instruction in found:
        where = f"{label}:{instruction.line}"
        if instruction.keyword == "FROM":
            source, name = _from_words(instruction.argument)
            stage = _Stage(instruction.line, name)
            earlier = {s.name: i for i, s in enumerate(stages) if s.name is not None}
            stages.append(stage)
            if source is None:
                stage.problems.append(f"{where}: FROM names no image; write FROM <image>")
                continue
            reference = expand(source, variables)
            if reference is None:
                unknown = ", ".join(_missing(source, variables))
                stage.problems.append(
                    f"{where}: FROM {source} cannot be resolved: no value for the ARG "
                    f"{unknown} (only ARGs declared before the first FROM count); {_FIX}"
                )
            elif not reference:
                stage.problems.append(f"{where}: FROM {source} resolves to an empty name; {_FIX}")
            elif reference.lower() in earlier:
                stage.parent = earlier[reference.lower()]
            elif reference.lower() != "scratch":
                stage.image = reference
        elif instruction.keyword == "COPY" and stages:
            _copy_from(instruction.argument, every_name, len(stages), stages[-1], where)
    return stages


def _copy_from(
    argument: str, names: Mapping[str, int], count: int, stage: _Stage, where: str
) -> None:
    for word in argument.split():
        if not word.startswith("--"):
            break  # flags come first
        flag, _, value = word.partition("=")
        if flag.lower() != "--from" or not value:
            continue
        if "$" in value:
            stage.problems.append(
                f"{where}: COPY {word}: Docker does not expand ARGs in --from; "
                f"write `FROM {value} AS <name>` and `COPY --from=<name>`"
            )
        elif value.lower() in names:
            stage.copies_from.append(names[value.lower()])
        elif value.isdigit() and int(value) < count:
            stage.copies_from.append(int(value))
        else:
            stage.copied_images.append(value)


def _needed(stages: list[_Stage], target: str, label: str) -> set[int]:
    """The target stage and every stage it is built FROM or copies from, transitively."""
    wanted = target.lower()
    start = next((i for i, s in enumerate(stages) if s.name == wanted), None)
    if start is None:
        names = [s.name for s in stages if s.name]
        known = f"its stages are {', '.join(names)}" if names else "it names no stage"
        raise TerminalError(
            f"{label}: build target {target!r} is not a stage of the Dockerfile ({known}); "
            f"set the target to one of them, or name a stage `FROM <image> AS {wanted}`"
        )
    needed: set[int] = set()
    pending = [start]
    while pending:
        index = pending.pop()
        if index in needed:
            continue
        needed.add(index)
        stage = stages[index]
        pending += stage.copies_from
        if stage.parent is not None:
            pending.append(stage.parent)
    return needed


def base_images(
    text: str,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    *,
    label: str = "Dockerfile",
) -> list[str]:
    """The images a build of this Dockerfile starts from, in order, each once.

    That is every FROM that names an image (not `scratch`, not an earlier stage), with
    `$X` / `${X}` resolved from the global ARGs' defaults overridden by `build_args`, and every
    image a `COPY --from=<image>` copies from (its files are in the result as much as a base
    image's). With `target`, only the stages the target needs count.

    Args:
        text: The Dockerfile.
        build_args: The build arguments the image is built with.
        target: The stage to build (`docker build --target`); None builds every stage.
        label: How errors name the Dockerfile, such as `services/orders/Dockerfile`.

    Returns:
        Image references as written after expansion, such as `python:3.11-slim`.

    Raises:
        TerminalError: a FROM cannot be resolved (an ARG with neither a default nor a build
            argument), or `target` is not a stage; every problem is listed, each with its line.
    """
    stages = _stages(text, build_args or {}, label)
    needed = _needed(stages, target, label) if target else set(range(len(stages)))
    chosen = [stage for index, stage in enumerate(stages) if index in needed]
    problems = [problem for stage in chosen for problem in stage.problems]
    if problems:
        raise TerminalError("\n".join(problems))
    images: list[str] = []
    for stage in chosen:
        for image in [stage.image, *stage.copied_images]:
            if image is not None and image not in images:
                images.append(image)
    return images
