"""Reading relay.yaml: `load_manifest` (the file) and `parse_manifest` (its parsed document).

Every problem in the file is reported at once, each naming the file, the field and what to
write instead, by raising `ManifestError`. Validation has two passes: pydantic checks the
structure of each part (its errors reworded by errors.py), then plain functions check what spans
parts (checks.py: dependencies, ports, platform settings, files on disk). When pydantic fails,
the second pass still runs over whatever of the raw document it can read, so one run shows all
the problems.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from relay.errors import ManifestError
from relay.manifest.checks import cross_field_problems, facts_from_model, facts_from_raw
from relay.manifest.errors import describe, short_repr
from relay.manifest.messages import (
    FILE_EMPTY,
    FILE_MISSING,
    FILE_UNREADABLE,
    NOT_A_MAPPING,
    YAML_SYNTAX,
)
from relay.manifest.models import Manifest


def _yaml_kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a plain string"
    return f"a single value ({short_repr(value)})"


def parse_manifest(
    data: dict[str, Any],
    path: str | Path,
    *,
    check_files: bool = False,
    shown_as: str | Path | None = None,
) -> Manifest:
    """Validate an already-parsed manifest document.

    Args:
        data: The document, as `yaml.safe_load` returns it.
        path: The manifest file it came from: named in every problem; its directory is the
            manifest's `root`.
        check_files: Also require each service's directory and Dockerfile to exist.
        shown_as: How messages name the file when `path` is not what the user knows it as (a
            checkout in Relay's cache): say, the file in the user's repository.

    Returns:
        The manifest, with defaults filled in and `root` and `source` set.

    Raises:
        ManifestError: With every problem found.
    """
    path = Path(path)
    # a string as given: Path('relay.yaml (git://host/x …)') would fold the URL's `//`
    shown: str | Path = shown_as if shown_as is not None else path
    if not isinstance(data, dict):
        raise ManifestError(shown, [f"{shown}: {NOT_A_MAPPING.format(kind=_yaml_kind(data))}"])
    files_root = path.parent if check_files else None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        problems = [describe(error) for error in exc.errors()]
        problems += cross_field_problems(facts_from_raw(data), files_root)
    else:
        problems = cross_field_problems(facts_from_model(manifest), files_root)
    if problems:
        raise ManifestError(shown, [f"{shown}: {problem}" for problem in problems])
    manifest._root = path.absolute().parent
    manifest._source = Path(shown) if shown_as is not None else path.absolute()
    return manifest


def load_manifest(
    path: str | Path, *, check_files: bool = True, shown_as: str | Path | None = None
) -> Manifest:
    """Read and validate a `relay.yaml`.

    Args:
        path: The manifest file.
        check_files: Also require each service's directory and Dockerfile to exist.
        shown_as: How messages name the file (see `parse_manifest`).

    Returns:
        The manifest, with defaults filled in and `root` and `source` set.

    Raises:
        ManifestError: With every problem found, including a missing file or invalid YAML.

    Example:
        >>> manifest = load_manifest("examples/shop/relay.yaml")  # doctest: +SKIP
        >>> manifest.image_repository("orders")  # doctest: +SKIP
        '127.0.0.1:5000/shop/orders'
    """
    path = Path(path)
    # a string as given: Path('relay.yaml (git://host/x …)') would fold the URL's `//`
    shown: str | Path = shown_as if shown_as is not None else path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(shown, [f"{shown}: {FILE_MISSING}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ManifestError(shown, [f"{shown}: {FILE_UNREADABLE.format(reason=reason)}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(shown, [f"{shown}: {_yaml_problem(exc)}"]) from None
    if data is None:
        raise ManifestError(shown, [f"{shown}: {FILE_EMPTY}"])
    return parse_manifest(data, path, check_files=check_files, shown_as=shown_as)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return YAML_SYNTAX.format(problem=exc, context="")
    mark = exc.problem_mark
    context = ""
    if exc.context and exc.context_mark is not None:
        context = f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
    problem = YAML_SYNTAX.format(problem=exc.problem, context=context)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
