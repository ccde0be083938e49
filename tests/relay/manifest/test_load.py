"""relay/manifest/load.py: reading the file, and every problem reported at once."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import yaml

from relay.errors import ManifestError, RelayError, TerminalError
from relay.manifest import load_manifest, parse_manifest
from tests.relay.manifest.documents import VALID, problems, with_environments, write

# --- the file itself -------------------------------------------------------------------------


def test_parse_manifest_does_not_check_files_by_default(tmp_path: Path) -> None:
    data = yaml.safe_load(VALID)

    manifest = parse_manifest(data, tmp_path / "relay.yaml")

    assert manifest.root == tmp_path
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data, tmp_path / "relay.yaml", check_files=True)
    assert len(caught.value.problems) == 4  # no service directory exists


def test_files_are_not_checked_when_told_not_to(tmp_path: Path) -> None:
    path = write(tmp_path, VALID, scaffold=False)

    assert load_manifest(path, check_files=False).app == "shop"


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    text = VALID.replace("    port: 8001", "    port: 8001: 8002")

    assert problems(tmp_path, text) == [
        "line 13, column 15: invalid YAML: mapping values are not allowed here; "
        "check the indentation and quoting there"
    ]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "relay.yaml"

    with pytest.raises(ManifestError) as caught:
        load_manifest(path)

    assert caught.value.problems == [
        f"{path}: file not found; create it (see docs/relay.yaml for an example) or fix the path"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "",
            "the file is empty; write a release manifest with at least 'app:' and 'services:'",
            id="empty",
        ),
        pytest.param(
            "- app: shop\n",
            "the top level is a list, not a mapping; start the file with keys such as "
            "'app: shop' and 'services:'",
            id="list",
        ),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


# --- all problems at once --------------------------------------------------------------------


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = (
        VALID.replace("    depends_on: [orders]", "    dependson: [orders]")
        .replace("[inventory, payments]", "[inventory, payment]")
        .replace("port: 8003", "port: 8002")
    )

    assert problems(tmp_path, text) == [
        "services.gateway.dependson: unknown key; did you mean 'depends_on'?",
        "services.orders.depends_on[1]: unknown service 'payment'; "
        "write one of: gateway, inventory, payments (did you mean 'payments'?)",
        "services.payments.port: 8002 is already used by services.orders; "
        "give each service its own port",
    ]


def test_cross_field_checks_still_run_when_the_structure_is_invalid(tmp_path: Path) -> None:
    text = with_environments(
        """\
        environments:
          dev: {port_offset: 10000, strategy: bluegreen}
          prod: {platform: kubernetes}
        """
    ).replace("[inventory, payments]", "[inventory, orders]")

    assert problems(tmp_path, text, scaffold=False) == [
        "environments.dev.strategy: Input should be 'rolling', 'blue_green' or 'canary' "
        "(got 'bluegreen'); write one of: rolling, blue_green, canary",
        "services.orders.depends_on[1]: 'orders' depends on itself; "
        "remove it from its own depends_on",
        "environments.prod.namespace: missing; kubernetes environments need a namespace, "
        "such as namespace: shop-prod",
        f"services.gateway.path: directory 'services/gateway' does not exist in {tmp_path}; "
        "create it or correct the path",
        f"services.orders.path: directory 'services/orders' does not exist in {tmp_path}; "
        "create it or correct the path",
        f"services.inventory.path: directory 'services/inventory' does not exist in "
        f"{tmp_path}; create it or correct the path",
        f"services.payments.path: directory 'services/payments' does not exist in "
        f"{tmp_path}; create it or correct the path",
    ]


# --- the error -------------------------------------------------------------------------------


def test_manifest_error_lists_each_problem_under_a_header() -> None:
    error = ManifestError(Path("relay.yaml"), ["relay.yaml: a: one", "relay.yaml: b: two"])

    assert str(error) == (
        "relay.yaml: 2 problems in the release manifest\n  relay.yaml: a: one\n  relay.yaml: b: two"
    )
    assert str(ManifestError(Path("relay.yaml"), ["relay.yaml: a: one"])).startswith(
        "relay.yaml: 1 problem in the release manifest\n"
    )


def test_manifest_error_is_terminal_and_survives_pickling() -> None:
    error = ManifestError(Path("relay.yaml"), ["relay.yaml: a: one"])

    copy = pickle.loads(pickle.dumps(error))

    assert isinstance(copy, ManifestError)
    assert isinstance(copy, TerminalError)
    assert isinstance(copy, RelayError)
    assert (copy.path, copy.problems, str(copy)) == (error.path, error.problems, str(error))


def test_a_remote_repository_is_named_with_its_url_intact(tmp_path: Path) -> None:
    """A release of `git://host/app` names its manifest `relay.yaml (git://host/app at …)`:
    the URL as the user wrote it, not folded to `git:/host` by a path."""
    shown = "relay.yaml (git://127.0.0.1:9418/app at 1a2b3c4d5e6f)"
    text = with_environments("environments:\n  dev: {strategy: rolling}\n")  # no port_offset
    path = write(tmp_path, text, scaffold=False)

    with pytest.raises(ManifestError) as caught:
        load_manifest(path, check_files=False, shown_as=shown)

    assert str(caught.value).startswith(f"{shown}: 1 problem")
    assert all(problem.startswith(f"{shown}: ") for problem in caught.value.problems)
