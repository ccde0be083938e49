"""The checks that span parts of relay.yaml, run after pydantic has checked each part:
dependencies (known services, no cycles), service ports, platform settings, canary steps,
per-service secrets, where the stages run and, when asked, the files on disk (present, and
inside the repository at any depth of symbolic links) and each test_target's Dockerfile stage.
The docker platform's host ports are checked in ports.py.

They read `Facts`: from the validated model or, when pydantic failed, from whatever of the raw
document has the right type, so that one run reports every problem.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from relay.dockerfile import stage_names
from relay.graph import find_cycles
from relay.manifest.limits import DEFAULT_PORT_OFFSETS, PORT_MAX, PORT_MIN
from relay.manifest.messages import (
    CANARY_EMPTY,
    CANARY_END,
    CANARY_NOT_INCREASING,
    CANARY_OUT_OF_RANGE,
    CLUSTER_TWICE,
    CONTAINER_ONLY,
    DEPENDENCY_CYCLE,
    DID_YOU_MEAN,
    DIRECTORY_MISSING,
    DOCKERFILE_MISSING,
    DUPLICATE_PORT,
    KUBERNETES_NOT_ON_DOCKER,
    LINK_ESCAPES,
    NAMESPACE_MISSING,
    NAMESPACE_NOT_ON_DOCKER,
    PORT_OFFSET_MISSING,
    PORT_OFFSET_NOT_ON_KUBERNETES,
    REPEATED_DEPENDENCY,
    SELF_DEPENDENCY,
    SETUP_WITHOUT_IMAGE,
    TARGET_AND_IMAGE,
    TARGET_MISSING,
    UNKNOWN_SECRET_ENVIRONMENT,
    UNKNOWN_SERVICE,
)
from relay.manifest.models import (
    Environment,
    Manifest,
    Service,
    default_environments,
    with_environment_defaults,
)
from relay.manifest.ports import docker_port_problems


@dataclass(frozen=True)
class Facts:
    """What the cross-field checks read: from the validated model or, failing that, from
    whatever of the raw document has the right type."""

    app: str
    depends_on: Mapping[str, Sequence[object]]
    ports: Mapping[str, int]
    environments: Mapping[str, Environment]
    services: Mapping[str, Service]


def facts_from_model(manifest: Manifest) -> Facts:
    """The facts of a manifest pydantic accepted."""
    return Facts(
        app=manifest.app,
        depends_on=manifest.dependency_graph(),
        ports={name: service.port for name, service in manifest.services.items()},
        environments=manifest.environments,
        services=manifest.services,
    )


def _as_dict(value: object) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and PORT_MIN <= value <= PORT_MAX


M = TypeVar("M", bound=BaseModel)


def _valid_entries(raw: object, model: type[M]) -> dict[str, M]:
    """The entries of a raw mapping that are valid `model`s on their own."""
    valid: dict[str, M] = {}
    for name, value in _as_dict(raw).items():
        with contextlib.suppress(ValidationError):  # reported by the whole-document validation
            valid[name] = model.model_validate(value)
    return valid


def facts_from_raw(data: Mapping[str, Any]) -> Facts:
    """The facts of a document pydantic refused: what of it has the right type."""
    services = {name: _as_dict(value) for name, value in _as_dict(data.get("services")).items()}
    depends_on = {
        name: deps if isinstance(deps := service.get("depends_on", []), list) else []
        for name, service in services.items()
    }
    environments = (
        _valid_entries(with_environment_defaults(data["environments"]), Environment)
        if "environments" in data
        else default_environments()
    )
    app = data.get("app")
    return Facts(
        app=app if isinstance(app, str) else "app",
        depends_on=depends_on,
        ports={name: s["port"] for name, s in services.items() if _is_port(s.get("port"))},
        environments=environments,
        services=_valid_entries(data.get("services"), Service),
    )


def _unknown_service(name: str, consumer: str, known: Sequence[str]) -> str:
    others = sorted(other for other in known if other != consumer)
    message = UNKNOWN_SERVICE.format(name=name, known=", ".join(others))
    close = difflib.get_close_matches(name, others, n=1)
    return message + (DID_YOU_MEAN.format(suggestion=close[0]) if close else "")


def _dependency_problems(depends_on: Mapping[str, Sequence[object]]) -> list[str]:
    problems: list[str] = []
    for name, deps in depends_on.items():
        seen: set[str] = set()
        for index, dep in enumerate(deps):
            where = f"services.{name}.depends_on[{index}]"
            if not isinstance(dep, str):
                continue  # a type error, reported by pydantic
            if dep == name:
                problems.append(f"{where}: {SELF_DEPENDENCY.format(name=name)}")
            elif dep not in depends_on:
                problems.append(f"{where}: {_unknown_service(dep, name, list(depends_on))}")
            elif dep in seen:
                problems.append(f"{where}: {REPEATED_DEPENDENCY.format(name=dep)}")
            seen.add(dep)
    graph = {
        name: [dep for dep in deps if isinstance(dep, str) and dep != name]
        for name, deps in depends_on.items()
    }
    for cycle in find_cycles(graph):
        problems.append(f"services: {DEPENDENCY_CYCLE.format(cycle=' -> '.join(cycle))}")
    return problems


def _duplicate_port_problems(ports: Mapping[str, int]) -> list[str]:
    problems: list[str] = []
    owner: dict[int, str] = {}
    for name, port in ports.items():
        if port in owner:
            message = DUPLICATE_PORT.format(port=port, other=owner[port])
            problems.append(f"services.{name}.port: {message}")
        else:
            owner[port] = name
    return problems


def _platform_problems(name: str, env: Environment, app: str) -> list[str]:
    where = f"environments.{name}"
    problems: list[str] = []
    if env.platform == "docker":
        if env.port_offset is None:
            offset = DEFAULT_PORT_OFFSETS.get(name, 10_000)
            problems.append(f"{where}.port_offset: {PORT_OFFSET_MISSING.format(example=offset)}")
        if env.namespace is not None:
            problems.append(f"{where}.namespace: {NAMESPACE_NOT_ON_DOCKER}")
        if env.kubernetes is not None:
            problems.append(f"{where}.kubernetes: {KUBERNETES_NOT_ON_DOCKER}")
    else:
        if env.namespace is None:
            namespace = f"{app}-{name}"
            problems.append(f"{where}.namespace: {NAMESPACE_MISSING.format(example=namespace)}")
        if env.port_offset is not None:
            problems.append(f"{where}.port_offset: {PORT_OFFSET_NOT_ON_KUBERNETES}")
        if env.cluster.cluster is not None and env.cluster.kubeconfig is not None:
            problems.append(f"{where}.kubernetes.cluster: {CLUSTER_TWICE}")
    return problems


def _canary_problems(name: str, steps: Sequence[int]) -> list[str]:
    where = f"environments.{name}.canary_steps"
    if not steps:
        return [f"{where}: {CANARY_EMPTY}"]
    problems: list[str] = []
    for index, step in enumerate(steps):
        if not 1 <= step <= 100:
            problems.append(f"{where}[{index}]: {CANARY_OUT_OF_RANGE.format(value=step)}")
        elif index and step <= steps[index - 1]:
            message = CANARY_NOT_INCREASING.format(value=step, previous=steps[index - 1])
            problems.append(f"{where}[{index}]: {message}")
    if steps[-1] != 100:
        problems.append(f"{where}: {CANARY_END.format(last=steps[-1])}")
    return problems


def _environment_problems(environments: Mapping[str, Environment], app: str) -> list[str]:
    problems: list[str] = []
    for name, env in environments.items():
        problems += _platform_problems(name, env, app)
        problems += _canary_problems(name, env.canary_steps)
    return problems


def _secret_problems(
    services: Mapping[str, Service], environments: Mapping[str, Environment]
) -> list[str]:
    """Per-service secrets must name environments of this manifest."""
    problems: list[str] = []
    known = ", ".join(environments)
    for name, service in services.items():
        for env_name in service.secrets:
            if env_name not in environments:
                message = UNKNOWN_SECRET_ENVIRONMENT.format(name=env_name, known=known)
                problems.append(f"services.{name}.secrets.{env_name}: {message}")
    return problems


def _stage_problems(services: Mapping[str, Service]) -> list[str]:
    """Where a service's stages run: one place, and the settings that go with it."""
    problems: list[str] = []
    for name, service in services.items():
        where = f"services.{name}"
        if service.test_target is not None and service.stage_image is not None:
            problems.append(f"{where}.stage_image: {TARGET_AND_IMAGE}")
        if service.setup is not None and service.stage_image is None:
            problems.append(f"{where}.setup: {SETUP_WITHOUT_IMAGE}")
        if service.runner == "host":
            for field in ("test_target", "stage_image", "setup"):
                if getattr(service, field) is not None:
                    problems.append(f"{where}.{field}: {CONTAINER_ONLY}")
    return problems


def _repository_root(root: Path) -> Path:
    """The checkout that holds the manifest: the nearest directory with `.git`, else its own."""
    for candidate in (root, *root.parents):
        if (candidate / ".git").exists():
            return candidate
    return root


def _escaping_link(base: Path, relative: str, repository: Path) -> str | None:
    """The first symbolic link on the way from `base` to `relative` that leads outside
    `repository`, as "<link> -> <target>", or None (links inside it are fine)."""
    outside = repository.resolve()
    current = base
    for part in PurePosixPath(relative).parts:
        current = current / part
        if current.is_symlink():
            target = current.resolve()
            if target != outside and outside not in target.parents:
                return f"{current.relative_to(repository)} -> {target}"
    return None


def _containment_problems(services: Mapping[str, Service], root: Path) -> list[str]:
    """Every path relay.yaml names must stay inside the repository, at any depth of links:
    a service directory linked elsewhere would be built and tested from outside it."""
    repository = _repository_root(root)
    problems: list[str] = []
    for name, service in services.items():
        directory = service.directory(root)
        named = [("path", root, service.path)]
        named.append(("dockerfile", directory, service.dockerfile))
        if service.sast is not None and service.sast.sarif is not None:
            named.append(("sast.sarif", directory, service.sast.sarif))
        named += [(f"setup_files[{i}]", directory, f) for i, f in enumerate(service.setup_files)]
        for field, base, relative in named:
            link = _escaping_link(base, relative, repository)
            if link is not None:
                link_name, target = link.split(" -> ", 1)
                message = LINK_ESCAPES.format(link=link_name, target=target, root=repository)
                problems.append(f"services.{name}.{field}: {message}")
                break
    return problems


def _target_problems(services: Mapping[str, Service], root: Path) -> list[str]:
    problems: list[str] = []
    for name, service in services.items():
        dockerfile = service.dockerfile_path(root)
        if service.test_target is None or not dockerfile.is_file():
            continue
        stages = stage_names(dockerfile.read_text(encoding="utf-8", errors="replace"))
        if service.test_target.lower() not in stages:
            file = str(PurePosixPath(service.path) / service.dockerfile)
            message = TARGET_MISSING.format(
                target=service.test_target, file=file, stages=", ".join(stages) or "none named"
            )
            problems.append(f"services.{name}.test_target: {message}")
    return problems


def _file_problems(services: Mapping[str, Service], root: Path) -> list[str]:
    problems = _containment_problems(services, root)
    if problems:  # nothing is read through a link that leaves the repository
        return problems
    for name, service in services.items():
        if not service.directory(root).is_dir():
            message = DIRECTORY_MISSING.format(path=service.path, root=root)
            problems.append(f"services.{name}.path: {message}")
        elif not service.dockerfile_path(root).is_file():
            file = str(PurePosixPath(service.path) / service.dockerfile)
            message = DOCKERFILE_MISSING.format(file=file, path=service.path)
            problems.append(f"services.{name}.dockerfile: {message}")
    return problems + _target_problems(services, root)


def cross_field_problems(facts: Facts, files_root: Path | None) -> list[str]:
    """Every problem that spans parts; with `files_root`, also the files the services name."""
    docker_offsets = {
        name: env.port_offset
        for name, env in facts.environments.items()
        if env.platform == "docker" and env.port_offset is not None
    }
    problems = [
        *_dependency_problems(facts.depends_on),
        *_duplicate_port_problems(facts.ports),
        *_environment_problems(facts.environments, facts.app),
        *docker_port_problems(docker_offsets, facts.ports),
        *_secret_problems(facts.services, facts.environments),
        *_stage_problems(facts.services),
    ]
    if files_root is not None:
        problems += _file_problems(facts.services, files_root)
    return problems
