"""The field types of relay.yaml: `Annotated` types whose validators word their errors in the
manifest's terms (see messages.py), so that pydantic reports them as they are."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from relay.manifest.limits import DEFAULT_DOCKERFILE, PORT_MAX, PORT_MIN
from relay.manifest.messages import (
    BAD_NAME,
    BAD_QUANTITY,
    BAD_VARIABLE,
    COMMAND_EMPTY,
    COMMAND_UNSPLITTABLE,
    HEALTH_NOT_ABSOLUTE,
    PATH_ABSOLUTE,
    PATH_EMPTY,
    PATH_ESCAPES,
    REGISTRY_INVALID,
    URL_INVALID,
)

_SERVICE_NAME = r"^[a-z][a-z0-9-]{0,39}$"
_ENVIRONMENT_NAME = r"^[a-z][a-z0-9-]{0,19}$"
_APP_NAME = r"^[a-z0-9][a-z0-9-]{0,39}$"
_NAMESPACE = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_VARIABLE = r"[A-Za-z_][A-Za-z0-9_]*"


def _custom(message: str) -> PydanticCustomError:
    """A pydantic error whose message is final; without a context pydantic does not format it."""
    return PydanticCustomError("relay", message)


# kind -> (pattern, rule in words, example)
NAME_RULES = {
    "app": (_APP_NAME, "1-40 lowercase letters, digits or '-'", "shop"),
    "service": (_SERVICE_NAME, "1-40 lowercase letters, digits or '-', first a letter", "orders"),
    "environment": (
        _ENVIRONMENT_NAME,
        "1-20 lowercase letters, digits or '-', first a letter",
        "staging",
    ),
    "namespace": (_NAMESPACE, "1-63 lowercase letters, digits or '-'", "shop-prod"),
}


def _name(kind: str) -> AfterValidator:
    """A validator for a name of `kind`, with the rule and an example in its error."""
    pattern, rule, example = NAME_RULES[kind]
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise _custom(BAD_NAME.format(value=value, kind=kind, rule=rule, example=example))
        return value

    return AfterValidator(check)


AppName = Annotated[str, _name("app")]
ServiceName = Annotated[str, _name("service")]
EnvironmentName = Annotated[str, _name("environment")]
Namespace = Annotated[str, _name("namespace")]


def _relative_path(base: str, example: str) -> Callable[[str], str]:
    """A validator for a path that must stay inside `base`: not absolute, no '..'."""

    def check(value: str) -> str:
        path = PurePosixPath(value)
        if not value:
            raise _custom(PATH_EMPTY.format(base=base, example=example))
        if path.is_absolute():
            raise _custom(PATH_ABSOLUTE.format(value=value, base=base, example=example))
        if ".." in path.parts:
            raise _custom(PATH_ESCAPES.format(value=value, base=base, example=example))
        return value

    return check


ServicePath = Annotated[
    str, AfterValidator(_relative_path("the directory of relay.yaml", "services/orders"))
]
DockerfilePath = Annotated[
    str, AfterValidator(_relative_path("the service's path", DEFAULT_DOCKERFILE))
]
SarifPath = Annotated[str, AfterValidator(_relative_path("the service's path", "sast.sarif"))]
SetupPath = Annotated[
    str, AfterValidator(_relative_path("the service's path", "requirements-dev.txt"))
]


def _check_health(value: str) -> str:
    if not value.startswith("/"):
        raise _custom(HEALTH_NOT_ABSOLUTE.format(value=value))
    return value


HealthPath = Annotated[str, AfterValidator(_check_health)]


def _check_registry(value: str) -> str:
    if not value or "://" in value or value.endswith("/") or any(c.isspace() for c in value):
        raise _custom(REGISTRY_INVALID.format(value=value))
    return value


RegistryAddress = Annotated[str, AfterValidator(_check_registry)]


def _check_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise _custom(URL_INVALID.format(value=value))
    return value.rstrip("/")


BaseUrl = Annotated[str, AfterValidator(_check_url)]
"""An http(s) URL, kept without a trailing '/'."""


# What a metric query may leave for Relay to fill in at each canary window: a PromQL query of
# `analysis.prometheus`, a dimension value of `analysis.cloudwatch_metrics`.
PROMQL_PLACEHOLDERS = ("app", "service", "environment", "canary", "stable", "version", "window")
DIMENSION_PLACEHOLDERS = ("service", "environment", "version")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")


def placeholders_in(text: str) -> set[str]:
    """The `{{name}}` placeholders a query or dimension value uses."""
    return set(_PLACEHOLDER.findall(text))


def fill_placeholders(text: str, values: Mapping[str, str]) -> str:
    """`text` with each `{{name}}` replaced by its value (the names were checked on load)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def _placeholders_known(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not value.strip():
            raise _custom("may not be empty")
        unknown = sorted(placeholders_in(value) - set(allowed))
        if unknown:
            raise _custom(
                f"{{{{{unknown[0]}}}}} is not a placeholder Relay fills in; use "
                + ", ".join(f"{{{{{name}}}}}" for name in allowed)
            )
        return value

    return check


PromQL = Annotated[str, AfterValidator(_placeholders_known(PROMQL_PLACEHOLDERS))]
"""A PromQL query whose `{{placeholders}}` are ones Relay fills in."""

DimensionValue = Annotated[str, AfterValidator(_placeholders_known(DIMENSION_PLACEHOLDERS))]
"""A CloudWatch dimension value whose `{{placeholders}}` are ones Relay fills in."""


def _split_command(value: object) -> object:
    """A string becomes its shell-like split; a list is kept; anything else fails as a list."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise _custom(COMMAND_UNSPLITTABLE.format(value=value, reason=exc)) from None
        if not argv:
            raise _custom(COMMAND_EMPTY)
        return argv
    if isinstance(value, list) and not value:
        raise _custom(COMMAND_EMPTY)
    return value


Command = Annotated[list[str], BeforeValidator(_split_command)]
"""An argv list. In YAML either a string, split like a shell would (but run without one), or a
non-empty list of strings."""


Port = Annotated[int, Field(ge=PORT_MIN, le=PORT_MAX)]


def _check_variable(value: str) -> str:
    if not re.fullmatch(_VARIABLE, value):
        raise _custom(BAD_VARIABLE.format(value=value))
    return value


SecretKey = Annotated[str, AfterValidator(_check_variable)]
SecretId = Annotated[str, Field(min_length=1)]
AlarmName = Annotated[str, Field(min_length=1)]

QUANTITIES = {
    # kind -> (pattern, example): Kubernetes resource quantities, as Relay accepts them
    "cpu": (r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$", "250m"),
    "memory": (r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$", "256Mi"),
}


def _quantity(kind: str) -> AfterValidator:
    """A validator for a Kubernetes quantity of `kind`; strings only, so YAML's 0.5 is an error
    that says to write '500m', not a float that would render differently."""
    pattern, example = QUANTITIES[kind]

    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise _custom(BAD_QUANTITY.format(value=value, kind=kind, example=example))
        return value

    return AfterValidator(check)


Cpu = Annotated[str, _quantity("cpu")]
Memory = Annotated[str, _quantity("memory")]
