"""pydantic's errors in the manifest's words: each becomes
`<field.path>: <what is wrong>; <what to write instead>`, with an example value for the field
(`describe`). Errors our own validators raise (fields.py) are already worded and pass through.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from relay.manifest.fields import NAME_RULES, QUANTITIES
from relay.manifest.limits import (
    ANALYSIS_INTERVAL_MAX,
    ANALYSIS_INTERVAL_MIN,
    APPROVAL_TIMEOUT_MAX,
    APPROVAL_TIMEOUT_MIN,
    KEEP_PREVIOUS_MAX,
    PORT_MAX,
    PORT_MIN,
    PORT_OFFSET_MAX,
    PROGRESS_DEADLINE_MAX,
    PROGRESS_DEADLINE_MIN,
    REPLICAS_MAX,
    REPLICAS_MIN,
    SOAK_MAX,
)
from relay.manifest.messages import (
    COMMAND_HINT,
    NAME_NOT_TEXT,
    NOT_A_MAPPING_FIELD,
    SCHEMA_HINT,
    UNKNOWN_KEY,
    UNKNOWN_KEY_CLOSE,
)
from relay.manifest.models import (
    AllowedFinding,
    Analysis,
    Approval,
    CloudWatch,
    CloudWatchMetrics,
    Compliance,
    Environment,
    ImageScan,
    Kubernetes,
    Manifest,
    Packages,
    ResourceAmounts,
    Resources,
    Sast,
    Security,
    Service,
    SkippedCheck,
)

_MODELS_BY_SHAPE: dict[tuple[str, ...], type[BaseModel]] = {
    (): Manifest,
    ("services", "*"): Service,
    ("services", "*", "sast"): Sast,
    ("environments", "*"): Environment,
    ("environments", "*", "approval"): Approval,
    ("environments", "*", "analysis"): Analysis,
    ("environments", "*", "analysis", "cloudwatch_metrics"): CloudWatchMetrics,
    ("environments", "*", "kubernetes"): Kubernetes,
    ("environments", "*", "kubernetes", "resources"): Resources,
    ("environments", "*", "kubernetes", "resources", "requests"): ResourceAmounts,
    ("environments", "*", "kubernetes", "resources", "limits"): ResourceAmounts,
    ("image_scan",): ImageScan,
    ("image_scan", "allow", "*"): AllowedFinding,
    ("security",): Security,
    ("security", "packages"): Packages,
    ("security", "packages", "allow", "*"): AllowedFinding,
    ("security", "compliance"): Compliance,
    ("security", "compliance", "skip", "*"): SkippedCheck,
    ("cloudwatch",): CloudWatch,
}
# Example values used in hints, by field name.
_EXAMPLES = {
    "app": "shop",
    "services": "{orders: {path: services/orders, port: 8002}}",
    "environments": "{dev: {port_offset: 10000}}",
    "path": "services/orders",
    "port": "8080",
    "port_offset": "10000",
    "timeout_seconds": "3600",
    "canary_steps": "[10, 50, 100]",
    "depends_on": "[inventory, payments]",
    "approvers": "[alice, bob]",
    "secrets": "dev-config",
    "interval_seconds": "10",
    "max_error_rate": "0.05 (5%)",
    "max_response_ms": "1000",
    "min_requests": "20",
    "max_error_rate_increase": "0.02 (2 points above the stable version's rate)",
    "max_response_ratio": "1.5 (the stable version's mean time x 1.5)",
    "keep_previous_seconds": "30",
    "soak_seconds": "3600 (an hour in the environment before)",
    "watch_seconds": "60",
    "branch": "main",
    "secret_keys": "[DATABASE_URL]",
    "cloudwatch_alarms": "[shop-prod-5xx]",
    "block_on_alarms": "[shop-prod-5xx]",
    "tokens_secret": "relay/approvers",
    "until": "2027-01-31",
    "reason": "not reachable from our code",
    "id": "CVE-2024-0001",
    "namespace": "Relay",
    "log_group_prefix": "/relay",
    "sarif": "sast.sarif",
    "advisories": "https://pypi.org/pypi",
    "cluster": "shop-eks (a KubernetesClusterConfig block name)",
    "kubeconfig": "/etc/relay/kubeconfig",
    "context": "shop-prod",
    "replicas": "2",
    "progress_deadline_seconds": "600",
    "gateway_namespace": "gateway-system",
    "cpu": "250m",
    "memory": "256Mi",
    "public": "true",
    "build_args": "{PYTHON_VERSION: '3.12'}",
    "runner": "container",
    "test_target": "test",
    "stage_image": "python:3.12-slim",
    "setup_files": "[requirements-dev.txt]",
}
_MAPPING_EXAMPLES: dict[type[BaseModel], str] = {
    Service: "{path: services/orders, port: 8002}",
    Sast: "{fail_on: high}",
    Environment: "{port_offset: 10000}",
    Approval: "{required: true}",
    Analysis: "{max_error_rate: 0.05}",
    CloudWatchMetrics: "{namespace: AWS/ApplicationELB, dimensions: {TargetGroup: "
    "'targetgroup/{{service}}-{{version}}'}, requests: RequestCount, errors: "
    "HTTPCode_Target_5XX_Count}",
    Kubernetes: "{replicas: 2, progress_deadline_seconds: 600}",
    Resources: "{requests: {cpu: 100m, memory: 128Mi}, limits: {cpu: 500m, memory: 256Mi}}",
    ResourceAmounts: "{cpu: 250m, memory: 256Mi}",
}
_COMMAND_FIELDS = {
    "setup",
    "build",
    "unit_tests",
    "integration_tests",
    "e2e_tests",
    "smoke_tests",
    "command",
}
_ITEM_EXAMPLES = {
    "canary_steps": "50",
    "depends_on": "inventory",
    "approvers": "alice",
    "secret_keys": "DATABASE_URL",
    "cloudwatch_alarms": "shop-prod-5xx",
    "block_on_alarms": "shop-prod-5xx",
}
# (lowest, highest or None for no limit) of the fields with a range.
_RANGES: dict[str, tuple[int, int | None]] = {
    "port": (PORT_MIN, PORT_MAX),
    "port_offset": (0, PORT_OFFSET_MAX),
    "timeout_seconds": (APPROVAL_TIMEOUT_MIN, APPROVAL_TIMEOUT_MAX),
    "interval_seconds": (ANALYSIS_INTERVAL_MIN, ANALYSIS_INTERVAL_MAX),
    "max_error_rate": (0, 1),
    "max_response_ms": (1, None),
    "min_requests": (1, None),
    "max_error_rate_increase": (0, 1),
    "max_response_ratio": (1, None),
    "keep_previous_seconds": (0, KEEP_PREVIOUS_MAX),
    "soak_seconds": (0, SOAK_MAX),
    "watch_seconds": (0, KEEP_PREVIOUS_MAX),
    "replicas": (REPLICAS_MIN, REPLICAS_MAX),
    "progress_deadline_seconds": (PROGRESS_DEADLINE_MIN, PROGRESS_DEADLINE_MAX),
}
# Fields that take any number, not just whole ones.
_FRACTIONAL = {
    "interval_seconds",
    "max_error_rate",
    "max_error_rate_increase",
    "max_response_ratio",
    "keep_previous_seconds",
    "watch_seconds",
}
_INT_ERRORS = {"int_type", "int_parsing", "int_from_float"}
_FLOAT_ERRORS = {"float_type", "float_parsing"}
_RANGE_ERRORS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}
_MAPPING_ERRORS = {"dict_type", "model_type", "model_attributes_type"}


# Lists of mappings: an int inside them is an index, not a key.
_LISTS = {"allow", "skip"}


def _format_loc(loc: Sequence[str | int]) -> str:
    """`("services", "orders", "depends_on", 1)` -> `"services.orders.depends_on[1]"`.

    An int is a list index at the end of a location or inside a list of mappings (`_LISTS`);
    anywhere else it is a mapping key YAML read as a number.
    """
    text = ""
    for position, part in enumerate(loc):
        if part == "[key]":
            continue
        if isinstance(part, int) and (position == len(loc) - 1 or loc[position - 1] in _LISTS):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _field_name(loc: Sequence[str | int]) -> tuple[str, bool]:
    """The last field name in `loc`, and whether `loc` points at an item of that field's list."""
    is_item = bool(loc) and isinstance(loc[-1], int)
    names = [part for part in loc[:-1] if isinstance(part, str)] if is_item else list(loc)
    return (str(names[-1]) if names else "", is_item)


def _shape(loc: Sequence[str | int]) -> tuple[str, ...]:
    parts = ["*" if isinstance(part, int) else str(part) for part in loc]
    if len(parts) >= 2 and parts[0] in ("services", "environments"):
        parts[1] = "*"
    return tuple(parts)


def short_repr(value: object) -> str:
    """`repr(value)`, cut to 60 characters: how a problem shows the value it got."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_key(loc: Sequence[str | int]) -> str:
    model = _MODELS_BY_SHAPE.get(_shape(loc[:-1]))
    allowed = sorted(model.model_fields) if model else []
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if close:
        return UNKNOWN_KEY_CLOSE.format(suggestion=close[0])
    return UNKNOWN_KEY.format(allowed=", ".join(allowed))


def _hint(error: ErrorDetails, field: str, is_item: bool) -> str:
    """What to write instead, for a pydantic error on `field`."""
    kind = error["type"]
    example = (_ITEM_EXAMPLES if is_item else _EXAMPLES).get(field)
    if kind in _INT_ERRORS:
        return f"write a whole number such as {example or 10}"
    if kind in _FLOAT_ERRORS:
        return f"write a number such as {example or 10}"
    if kind in _RANGE_ERRORS and field in _RANGES:
        low, high = _RANGES[field]
        number = "number" if field in _FRACTIONAL else "whole number"
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        such_as = f", such as {example}" if field in _FRACTIONAL and example else ""
        return f"write a {number} {span}{such_as}"
    if kind == "literal_error":
        expected = str(error.get("ctx", {}).get("expected", ""))
        return "write one of: " + ", ".join(part.strip("' ") for part in _split_choices(expected))
    if kind == "string_pattern_mismatch" and example:
        return f"write a value such as {example}"
    if kind.startswith("date_"):
        return f"write a date as YYYY-MM-DD without quotes, such as {_EXAMPLES['until']}"
    if kind in {"bool_type", "bool_parsing"}:
        return "write true or false"
    if kind == "string_type" and field in QUANTITIES:
        return f"write a {field} quantity as text, such as {example}"
    if kind == "string_type":
        return "write text; quote it if YAML would read it as something else, such as '1.0'"
    if kind == "list_type" and field in _COMMAND_FIELDS:
        return COMMAND_HINT
    if kind == "list_type":
        return f"write a list, such as {example or '[a, b]'}"
    if kind == "too_short":
        return f"write at least one entry, such as {example}"
    if kind == "string_too_short":
        return f"write a value, such as {example}" if example else "write a value"
    return SCHEMA_HINT


def _split_choices(expected: str) -> list[str]:
    """`"'low', 'medium' or 'high'"` -> `["low", "medium", "high"]`."""
    return [part for part in expected.replace(" or ", ", ").split(", ") if part]


def _missing_example(loc: tuple[int | str, ...], field: str) -> str:
    """A service's path is named after the service (`services.ovens.path` -> services/ovens,
    or . for one at the repository's root); other fields take their example."""
    if field == "path" and len(loc) == 3 and loc[0] == "services":
        return f"services/{loc[1]} (its directory, from relay.yaml's; . for the same one)"
    return _EXAMPLES.get(field, "...")


def describe(error: ErrorDetails) -> str:
    """One pydantic error as `<field.path>: <what is wrong>; <what to write instead>`."""
    loc, kind = error["loc"], error["type"]
    where = _format_loc(loc)
    field, is_item = _field_name(loc)
    if kind == "relay":  # raised by our validators, already in the manifest's words
        return f"{where}: {error['msg']}"
    if kind == "extra_forbidden":
        return f"{where}: {_unknown_key(loc)}"
    if kind == "missing":
        return f"{where}: required key is missing; add {field}: {_missing_example(loc, field)}"
    if kind in {"too_short", "string_too_short"}:
        return f"{where}: is empty; {_hint(error, field, is_item)}"
    got = f"(got {short_repr(error.get('input'))})"
    if loc and loc[-1] == "[key]":
        name_kind = "service" if loc[0] == "services" else "environment"
        message = NAME_NOT_TEXT.format(kind=name_kind, got=got, example=NAME_RULES[name_kind][2])
        return f"{where}: {message}"
    if kind in _MAPPING_ERRORS:
        model = _MODELS_BY_SHAPE.get(_shape(loc))
        example = (_MAPPING_EXAMPLES.get(model) if model else None) or _EXAMPLES.get(field, "")
        return f"{where}: {NOT_A_MAPPING_FIELD.format(got=got, example=example)}"
    return f"{where}: {error['msg']} {got}; {_hint(error, field, is_item)}"
