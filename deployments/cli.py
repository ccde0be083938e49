"""The `relay` command.

    relay stack up|down|status|env     the local stack (dockerd, registry, moto, Prefect)
    relay validate [PATH]              check a relay.yaml and print every problem in it
    relay run --repo PATH [--ref REF] [--service NAME ...] [--env dev]
    relay demo                         the example shop, from commit to running in dev

Prefect reads its settings when it is imported, so commands that run flows first point the
process at the local stack (unless PREFECT_API_URL etc. are already set), then import flows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from pathlib import Path

from relay import stack
from relay.errors import ManifestError, RelayError
from relay.manifest import load_manifest
from relay.settings import relay_home

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "shop"


def _use_stack_environment() -> None:
    for key, value in stack.environment().items():
        os.environ.setdefault(key, value)


def cmd_stack(args: argparse.Namespace) -> int:
    if args.action == "up":
        stack.up()
    elif args.action == "down":
        stack.down()
    elif args.action == "status":
        status = stack.status()
        print(status)
        return 0 if status.all_running else 1
    else:
        for key, value in stack.environment().items():
            print(f"export {key}={value}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.path)
    print(
        f"{args.path}: ok — app {manifest.app}, {len(manifest.services)} services, "
        f"environments {', '.join(manifest.environments)}"
    )
    return 0


def _run_release(repository: str, ref: str, services: list[str] | None, environment: str) -> list:
    _use_stack_environment()
    from flows.release import release

    return release(repository, ref, services, environment)


def cmd_run(args: argparse.Namespace) -> int:
    results = _run_release(args.repo, args.ref, args.service or None, args.env)
    for r in results:
        print(f"{r.service:12} {r.image}  {r.url}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from relay.demo import sync_repository

    repo = relay_home() / "demo" / "shop"
    sha = sync_repository(EXAMPLE, repo)
    print(f"demo repository {repo} at {sha[:12]}")
    results = _run_release(str(repo), sha, None, "dev")
    print(f"\nPrefect UI: {os.environ['PREFECT_API_URL'].removesuffix('/api')}")
    failures = 0
    for r in results:
        with urllib.request.urlopen(f"{r.url}/version", timeout=5) as response:  # noqa: S310
            version = json.load(response).get("version")
        state = "ok" if version == r.commit else f"MISMATCH (expected {r.commit[:12]})"
        failures += state != "ok"
        built = "built" if r.built else "reused"
        print(f"  {r.service:10} {r.url}  /version={str(version)[:12]}  {built}  {state}")
    return 1 if failures else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="relay", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("stack", help="the local stack")
    s.add_argument("action", choices=["up", "down", "status", "env"])
    s.set_defaults(func=cmd_stack)
    v = sub.add_parser("validate", help="check a relay.yaml")
    v.add_argument("path", nargs="?", default="relay.yaml")
    v.set_defaults(func=cmd_validate)
    r = sub.add_parser("run", help="run the release pipeline for a commit")
    r.add_argument("--repo", required=True, help="path or URL of the application repository")
    r.add_argument("--ref", default="HEAD", help="branch, tag or commit (default HEAD)")
    r.add_argument("--service", action="append", help="only this service (repeatable)")
    r.add_argument("--env", default="dev", help="target environment (default dev)")
    r.set_defaults(func=cmd_run)
    d = sub.add_parser("demo", help="run the example shop from commit to dev")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        return 2
    except RelayError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
