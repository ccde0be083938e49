"""The `relay` command.

    relay stack up|down|status|env     the local stack (dockerd, registry, moto, Prefect)
    relay validate [PATH]              check a relay.yaml and print every problem in it
    relay run --repo PATH [--ref REF] [--base REF | --service NAME ...] [--through ENV]
    relay promote --repo PATH (--ref REF | --release ID) --env staging|prod [--auto-approve NAME]
    relay approve RUN_ID --as NAME [--comment TEXT] [--token]   (and `relay reject ...`)
    relay approver-token NAME          a new approval token and the digest to store for it
    relay rollback --repo PATH --env ENV [--service NAME]   a service, or the whole environment
    relay retry RUN_ID [--auto-approve NAME]   a failed release or promotion, again
    relay cancel RUN_ID [--wait S]     stop a release, promotion or rollback (a canary taken back)
    relay releases [--app APP] [--env ENV]   releases, where verified, where serving
    relay diff A B [--app APP] [--env ENV]   releases or environments: what changes
    relay status [--app APP]           what runs where, since when, who approved; drift
    relay history SERVICE [--app APP] [--env ENV]
    relay logs SERVICE --env ENV [--app APP] [--since 10m] [--follow]   the service's output
    relay analysis SERVICE --env ENV [--run RUN]   a canary's recorded analysis windows
    relay analysis replay RUN [--max-error-rate X ...]   judge them again with other limits
    relay metrics [--app APP] [--env ENV] [--days 30] [--publish]   DORA delivery metrics
    relay deploy [--nightly-repo PATH] [--nightly-cron CRON]   register prefect.yaml
    relay webhook serve [--host H] [--port P] [--config FILE]   git pushes start releases
    relay demo                         the example shop: dev, staging, a canary to prod
    relay iam-policy SERVICE ENV [--pipeline] [--file relay.yaml]   least-privilege IAM JSON
    relay render SERVICE ENV [--file relay.yaml] [--image IMAGE]   the Kubernetes objects (YAML)

Prefect reads its settings when it is imported, so commands that run flows first point the
process at the local stack (unless PREFECT_API_URL etc. are already set), then import flows.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import devstack
from deployments import runlog
from relay.errors import ManifestError, RelayError
from relay.manifest import Manifest, load_manifest
from relay.settings import relay_database, relay_home

APPROVAL_TOKEN_ENV = "RELAY_APPROVAL_TOKEN"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "shop"


def _use_stack_environment() -> None:
    for key, value in devstack.environment().items():
        os.environ.setdefault(key, value)


def cmd_stack(args: argparse.Namespace) -> int:
    if args.action != "up" and (args.postgres or args.sqlite or args.workers is not None):
        raise RelayError("--postgres, --sqlite and --workers go with `relay stack up`")
    if args.action == "up":
        devstack.up(mode=devstack.mode_from(args.postgres, args.sqlite, args.workers))
        _use_stack_environment()
        from deployments.automations import ensure_crash_detection

        print(devstack.progress_line("automation", ensure_crash_detection()))
        if devstack.load_mode(devstack.stack_paths()).workers > 1:
            # Service pipelines spread over the workers as runs of these (flows/spread.py).
            from deployments.register import register_deployments

            names = ["build-service", "deploy-service"]
            register_deployments("", names=names)
            print(devstack.progress_line("deployments", f"{', '.join(names)} registered"))
    elif args.action == "down":
        devstack.down()
    elif args.action == "status":
        status = devstack.status()
        print(status)
        return 0 if status.all_running else 1
    else:
        for key, value in devstack.environment().items():
            print(f"export {key}={value}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.path)
    print(
        f"{args.path}: ok — app {manifest.app}, {len(manifest.services)} services, "
        f"environments {', '.join(manifest.environments)}"
    )
    return 0


def _flows_here(args: argparse.Namespace) -> None:
    """Flows run in this process: on the local stack unless told otherwise, Prefect's log lines
    in a file (`--verbose`: here). Before anything imports Prefect."""
    _use_stack_environment()
    if not args.verbose:
        args.log = runlog.to_file(args.command)
        print(f"relay: Prefect's log: {args.log} (--verbose shows it here)", file=sys.stderr)


@contextmanager
def _watched(args: argparse.Namespace, what: str) -> Iterator[str]:
    """The name to give the top run; its progress and its runs' shown while the body runs."""
    from deployments.progress import run_name, watching
    from deployments.runs import settle_cancelled

    name = run_name(what)
    with watching(name) as watcher:
        args.runs = watcher.roots  # for the closing message: what `relay retry` takes
        try:
            yield name
        finally:
            settle_cancelled(list(watcher.roots))


def cmd_run(args: argparse.Namespace) -> int:
    if args.concurrency:
        os.environ["RELAY_CONCURRENCY"] = str(args.concurrency)
    _flows_here(args)
    from flows.release import release

    with _watched(args, f"release-{args.ref}") as name:
        results = asyncio.run(
            release.with_options(flow_run_name=name)(
                args.repo, args.ref, args.service or None, args.through, args.base
            )
        )
    _print_results(results)
    if results:
        where = (
            f"every environment through {results[0].environment}"
            if args.through
            else f"{results[0].environment}, its first environment"
        )
        print(f"release {results[0].release[:12]} is in {where}")
    return 0


def _print_results(results: list[Any]) -> None:
    for r in results:
        state = "deployed" if r.changed else "unchanged"
        print(f"{r.service:12} {state:9} {r.image}  {r.url}")


def cmd_retry(args: argparse.Namespace) -> int:
    _flows_here(args)
    from deployments.approvals import promote_with_auto_approval
    from deployments.runs import rerun_of
    from flows.release import release

    rerun = rerun_of(args.run_id)
    p = rerun.parameters
    print(
        f"relay: {rerun.flow} {rerun.name} again at {p['commit'][:12]}: images are reused, "
        "services that serve it already are left as they are",
        file=sys.stderr,
    )
    with _watched(args, f"{rerun.flow}-retry") as name:
        if rerun.flow == "release":
            results = asyncio.run(release.with_options(flow_run_name=name)(**p))
        else:
            results = promote_with_auto_approval(
                p["repository"],
                p["commit"],
                p["environment"],
                p.get("services"),
                args.auto_approve,
                p.get("release"),
                run_name=name,
            )
    _print_results(results)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    _use_stack_environment()
    from deployments.runs import cancel

    run = cancel(args.run_id, args.wait)
    print(f"{run.name} ({run.id}): {run.state_name}")
    return 0 if run.state is not None and run.state.is_final() else 1


def cmd_promote(args: argparse.Namespace) -> int:
    _flows_here(args)
    from deployments.approvals import promote_with_auto_approval

    with _watched(args, f"promote-{args.env}") as name:
        results = promote_with_auto_approval(
            args.repo,
            args.ref,
            args.env,
            args.service or None,
            args.auto_approve,
            args.release,
            run_name=name,
        )
    _print_results(results)
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    _use_stack_environment()
    from deployments.approvals import decide

    token = os.environ.get(APPROVAL_TOKEN_ENV, "")
    if args.token:
        token = getpass.getpass(f"approval token of {args.as_}: ")
    run = decide(
        args.run_id,
        approve=args.command == "approve",
        approver=args.as_,
        comment=args.comment,
        token=token,
    )
    verb = "approved" if args.command == "approve" else "rejected"
    print(f"{verb} run {run} as {args.as_}")
    return 0


def cmd_approver_token(args: argparse.Namespace) -> int:
    """A token is shown once, here; only its digest is stored (the tokens secret), so losing it
    means making a new one, and a reader of the secret cannot approve."""
    from relay.approval import new_token, token_digest

    token = new_token()
    print(f"token for {args.name} (give it to them privately; it is not stored anywhere):")
    print(f"  {token}")
    print("add to the tokens secret (approval.tokens_secret, default relay/approvers):")
    print(f'  "{args.name}": "{token_digest(token)}"')
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    _flows_here(args)
    if args.service is None:
        from flows.rollback_environment import rollback_environment

        with _watched(args, f"rollback-{args.env}") as name:
            results = asyncio.run(
                rollback_environment.with_options(flow_run_name=name)(args.repo, args.env)
            )
        for r in results:
            print(f"{args.env}: put back {r.image} at {r.url}")
        print(f"{args.env} serves its previous release again ({len(results)} service(s) changed)")
        return 0
    from flows.rollback import rollback

    with _watched(args, f"rollback-{args.service}-{args.env}") as name:
        result = asyncio.run(
            rollback.with_options(flow_run_name=name)(args.repo, args.service, args.env)
        )
    print(f"{args.service} in {args.env} now serves {result.image} at {result.url}")
    return 0


def cmd_releases(args: argparse.Namespace) -> int:
    _use_stack_environment()  # the stack's database (RELAY_DATABASE_URL), unless set
    from deployments.releases import releases_report

    print(releases_report(_app(args), args.env, args.limit))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    _use_stack_environment()  # the stack's database (RELAY_DATABASE_URL), unless set
    from deployments.releases import diff_report

    print(diff_report(_app(args), args.before, args.after, args.env, args.repo))
    return 0


def _app(args: argparse.Namespace) -> str:
    """--app, else the app of ./relay.yaml (run inside the application's repository)."""
    if args.app:
        return str(args.app)
    if Path("relay.yaml").is_file():
        return load_manifest("relay.yaml", check_files=False).app
    raise RelayError("no relay.yaml here; pass --app NAME or run in the application's directory")


def _manifest_of(app: str, path: Path) -> Manifest | None:
    """The manifest at `path` when it is `app`'s: without it, every environment is read as a
    Docker one. A manifest named with --file must exist."""
    if not path.is_file():
        if path != Path("relay.yaml"):
            raise RelayError(f"{path}: no such file; pass the application's relay.yaml")
        return None
    manifest = load_manifest(path, check_files=False)
    return manifest if manifest.app == app else None


def cmd_status(args: argparse.Namespace) -> int:
    _use_stack_environment()
    from deployments.status import status_report

    app = _app(args)
    manifest = _manifest_of(app, args.file)
    report, drift = status_report(app, manifest)
    print(report)
    for line in drift:
        print(f"drift: {line}")
    return 1 if drift else 0


def cmd_history(args: argparse.Namespace) -> int:
    _use_stack_environment()  # the stack's database (RELAY_DATABASE_URL), unless set
    from relay.ledger import Ledger
    from relay.status import format_history

    app = _app(args)
    records = Ledger(relay_database()).history(app, args.service, args.env, limit=args.limit)
    where = f" in {args.env}" if args.env else ""
    print(format_history(records) if records else f"no deployments of {app}/{args.service}{where}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """A service's output in an environment from CloudWatch Logs, each line with the version
    that wrote it; `--follow` keeps reading until Ctrl-C."""
    _use_stack_environment()
    from blocks.aws import aws_client
    from relay.aws.logs import NoSuchGroup, read_group, service_log_group
    from relay.ledger import Ledger
    from relay.status import format_log_lines, parse_since

    app = _app(args)
    try:
        since = parse_since(args.since)
    except ValueError as exc:
        raise RelayError(str(exc)) from None
    group = service_log_group(app, args.env, args.service)
    client = aws_client("logs")
    records = Ledger(relay_database()).history(app, args.service, args.env, limit=200)
    start = int((time.time() - since) * 1000)
    seen: set[str] = set()
    try:
        while True:
            try:
                lines = read_group(client, group, start)
            except NoSuchGroup:
                raise RelayError(
                    f"no logs of {args.service} in {args.env}: log group {group} does not "
                    "exist; set cloudwatch.service_logs: true in relay.yaml and deploy (docker "
                    "environments)"
                ) from None
            fresh = [line for line in lines if line["event_id"] not in seen]
            if fresh:
                print(format_log_lines(fresh, records), flush=True)
            seen |= {line["event_id"] for line in fresh}
            if not args.follow:
                return 0
            # Read the last minute again: the driver sends in batches, late lines land behind.
            start = max(start, int((time.time() - 60) * 1000))
            time.sleep(2)
    except KeyboardInterrupt:
        return 0


LIMIT_FLAGS = (
    "max_error_rate",
    "max_response_ms",
    "min_requests",
    "max_error_rate_increase",
    "max_response_ratio",
    "on_inconclusive",
)


def cmd_analysis(args: argparse.Namespace) -> int:
    """A canary's recorded windows (SERVICE --env ENV, or --run), or `replay RUN` with other
    limits: each step's verdict and where the canary would have stopped."""
    _use_stack_environment()  # the stack's database (RELAY_DATABASE_URL), unless set
    from pydantic import ValidationError

    from relay.ledger import Ledger
    from relay.replay import replay, replay_rows, window_rows
    from relay.tables import table

    ledger = Ledger(relay_database())
    if args.service == "replay":
        if not args.run_id:
            raise RelayError(
                "relay analysis replay RUN: name the canary's run (its id or its "
                "deployment's, 8 characters or more; `relay analysis SERVICE "
                "--env ENV` shows them)"
            )
        windows = ledger.windows_of_run(args.run_id)
    elif args.run:
        windows = ledger.windows_of_run(args.run)
    elif args.env:
        windows = ledger.windows(_app(args), args.env, args.service)
    else:
        raise RelayError(f"relay analysis {args.service}: add --env ENV (or --run RUN)")
    if not windows:
        where = (
            f"run {args.run_id or args.run!r}"
            if args.service == "replay" or args.run
            else f"{args.service} in {args.env}"
        )
        raise RelayError(
            f"no analysis windows recorded for {where}: a window is recorded for each canary "
            "step judged by its traffic; `relay history SERVICE` lists the deployments"
        )
    replayed = None
    if args.service == "replay":
        try:
            replayed = replay(windows, {flag: getattr(args, flag) for flag in LIMIT_FLAGS})
        except ValidationError as exc:
            problem = exc.errors()[0]
            flag = "--" + str(problem["loc"][0]).replace("_", "-")
            raise RelayError(f"{flag}: {problem['msg']}") from None
    first = windows[0]
    print(f"{first.service} in {first.environment}: canary {first.image}")
    print(f"run {first.run_id} (deployment {first.deploy_run_id or '-'}); times in UTC")
    rows = window_rows(windows) if replayed is None else replay_rows(replayed)
    print(table(list(rows[0]), [list(r.values()) for r in rows]))
    if replayed is not None:
        print(replayed.summary())
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    """The table from the ledger alone; --publish also makes the Prefect table artifact and
    sends the aggregates to CloudWatch, through the `delivery-metrics` flow."""
    if args.days < 1:
        raise RelayError(f"--days: {args.days} must be at least 1")
    if args.publish:
        _use_stack_environment()
        from flows.delivery_metrics import delivery_metrics

        metrics = asyncio.run(delivery_metrics(_app(args), args.env, args.days, args.namespace))
    else:
        from tasks.dora import read_delivery_metrics

        metrics = read_delivery_metrics(_app(args), args.env, args.days)
    from relay.dora import format_metrics

    print(format_metrics(metrics) or f"no deployments of {_app(args)} in the last {args.days} days")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    _use_stack_environment()
    from deployments.register import register_deployments

    repository = (
        args.nightly_repo
        or os.environ.get("RELAY_NIGHTLY_REPOSITORY")
        or str(relay_home() / "demo" / "shop")
    )
    register_deployments(repository, args.nightly_cron, pool=args.pool, image=args.image)
    where = f" on work pool {args.pool}" if args.pool else ""
    where += f" with image {args.image}" if args.image else ""
    print(f"registered the deployments of prefect.yaml{where} (nightly-e2e checks {repository})")
    from deployments.automations import ensure_crash_detection

    print(ensure_crash_detection())
    return 0


def cmd_webhook(args: argparse.Namespace) -> int:
    _use_stack_environment()
    from deployments.webhooks import WebhookSettings, serve

    serve(WebhookSettings.load(args.config), args.host, args.port)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    _use_stack_environment()
    from deployments.demo import run_demo

    ui = os.environ["PREFECT_API_URL"].removesuffix("/api")
    return run_demo(EXAMPLE, relay_home() / "demo" / "shop", ui)


def cmd_iam_policy(args: argparse.Namespace) -> int:
    """The runtime policy needs the secrets' real ARNs (they end in a random suffix), so it
    asks Secrets Manager; the pipeline policy needs the account and region it will run in."""
    _use_stack_environment()
    from blocks.aws import aws_client
    from relay.aws.iam import pipeline_policy, runtime_policy, secret_arns

    manifest = load_manifest(args.file)
    manifest.check_services([args.service])
    manifest.check_environment(args.env)
    if args.pipeline:
        sts = aws_client("sts")
        account = sts.get_caller_identity()["Account"]
        policy = pipeline_policy(manifest, account, sts.meta.region_name)
    else:
        arns = secret_arns(aws_client("secretsmanager"), manifest, args.service, args.env)
        if not arns:
            print(
                f"{args.service} reads no secret in {args.env}: its runtime needs no AWS policy",
                file=sys.stderr,
            )
            return 0
        policy = runtime_policy(arns)
    print(json.dumps(policy, indent=2))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """The objects Relay would apply, for review and GitOps: secret keys, never values (the
    secret versions are read from Secrets Manager, so the Secret's name is the real one)."""
    import yaml

    from relay.aws.secrets import resolve
    from relay.ledger import Ledger
    from relay.platforms.kubernetes.objects import render
    from relay.specs import kubernetes_spec

    manifest = load_manifest(args.file, check_files=False)  # no sources needed to render
    manifest.check_services([args.service])
    manifest.check_environment(args.env)
    env = manifest.environments[args.env]
    if env.platform != "kubernetes":
        raise RelayError(
            f"{args.file}: environments.{args.env} is on the {env.platform} platform; render "
            "prints Kubernetes objects: name a kubernetes environment"
        )
    image = args.image
    if image is None:
        current = Ledger(relay_database()).current(manifest.app, args.env, args.service)
        if current is None:
            raise RelayError(
                f"no image of {args.service} deployed to {args.env} yet; pass --image "
                f"{manifest.image_repository(args.service)}@sha256:..."
            )
        image = current.image
    config = None
    if env.secrets is not None or args.env in manifest.services[args.service].secrets:
        _use_stack_environment()
        from blocks.aws import aws_client

        config = resolve(aws_client("secretsmanager"), manifest, args.env, args.service)
    spec = kubernetes_spec(manifest, args.env, args.service, image, "", "", config)
    print(yaml.safe_dump_all(render(spec), sort_keys=False), end="")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="relay", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"relay {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("stack", help="the local stack")
    s.add_argument(
        "action",
        choices=["up", "down", "status", "env"],
        help="start it, stop what it started, show it, or print its environment (eval it)",
    )
    database = s.add_mutually_exclusive_group()
    database.add_argument(
        "--postgres",
        action="store_true",
        help="up: PostgreSQL backs the Prefect server and Relay's database (remembered)",
    )
    database.add_argument(
        "--sqlite", action="store_true", help="up: back to the embedded SQLite default"
    )
    s.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="up: run N workers, each with its own RELAY_HOME, as N machines would (remembered)",
    )
    s.set_defaults(func=cmd_stack)
    v = sub.add_parser("validate", help="check a relay.yaml")
    v.add_argument("path", nargs="?", default="relay.yaml", help="the manifest (./relay.yaml)")
    v.set_defaults(func=cmd_validate)
    r = sub.add_parser("run", help="run the release pipeline for a commit")
    r.add_argument(
        "--repo",
        default=".",
        help="path or URL of the application repository (default: this directory)",
    )
    r.add_argument("--ref", default="HEAD", help="branch, tag or commit (default HEAD)")
    r.add_argument("--service", action="append", help="only this service (repeatable)")
    r.add_argument(
        "--base", help="only services changed since this commit (and re-test dependents)"
    )
    r.add_argument("--through", help="promote up to this environment (default: the first only)")
    r.add_argument("--concurrency", type=int, help="services built and deployed at once (4)")
    _verbose_option(r)
    r.set_defaults(func=cmd_run)
    pr = sub.add_parser("promote", help="promote a commit's verified images to an environment")
    pr.add_argument(
        "--repo",
        default=".",
        help="path or URL of the application repository (default: this directory)",
    )
    pr.add_argument("--ref", default="HEAD", help="branch, tag or commit (default HEAD)")
    pr.add_argument("--env", required=True, help="target environment, e.g. staging or prod")
    pr.add_argument("--service", action="append", help="only this service (repeatable)")
    pr.add_argument(
        "--release",
        help="the release to promote (id prefix or alias, `relay releases`); default: --ref's",
    )
    pr.add_argument(
        "--auto-approve",
        metavar="NAME",
        help="answer the approval form as NAME (demos and drills; printed, and in the ledger)",
    )
    _verbose_option(pr)
    pr.set_defaults(func=cmd_promote)
    for verb in ("approve", "reject"):
        a = sub.add_parser(verb, help=f"{verb} a run waiting for approval")
        a.add_argument("run_id", help="the paused run, or the promotion run that waits")
        a.add_argument("--as", dest="as_", required=True, help="your name")
        a.add_argument("--comment", default="", help="why (kept in the ledger)")
        a.add_argument(
            "--token",
            action="store_true",
            help=f"ask for your approval token (not echoed); or set {APPROVAL_TOKEN_ENV}",
        )
        a.set_defaults(func=cmd_decide)
    at = sub.add_parser("approver-token", help="make an approval token and its stored digest")
    at.add_argument("name", help="the approver, as listed in approval.approvers")
    at.set_defaults(func=cmd_approver_token)
    rb = sub.add_parser("rollback", help="put the previous good version back")
    rb.add_argument(
        "--repo",
        default=".",
        help="path or URL of the application repository (default: this directory)",
    )
    rb.add_argument(
        "--service", help="only this service; without it the whole environment's release"
    )
    rb.add_argument("--env", required=True, help="the environment to put back")
    _verbose_option(rb)
    rb.set_defaults(func=cmd_rollback)
    rt = sub.add_parser("retry", help="run a failed release or promotion again")
    rt.add_argument("run_id", help="the failed release or promotion run (its Prefect run id)")
    rt.add_argument(
        "--auto-approve",
        metavar="NAME",
        help="a promotion: answer its approval form as NAME (printed, and in the ledger)",
    )
    _verbose_option(rt)
    rt.set_defaults(func=cmd_retry)
    cn = sub.add_parser("cancel", help="stop a release, promotion or rollback that is running")
    cn.add_argument("run_id", help="the run (its Prefect run id, printed by relay run)")
    cn.add_argument(
        "--wait",
        type=float,
        default=120,
        help="seconds to wait for it to stop, a canary taken back (120)",
    )
    cn.set_defaults(func=cmd_cancel)
    rl = sub.add_parser("releases", help="releases, where each was verified, where it serves")
    rl.add_argument("--app", help="the application (default: ./relay.yaml's)")
    rl.add_argument("--env", help="only releases verified or serving in this environment")
    rl.add_argument("--limit", type=int, default=20, help="how many, newest first (20)")
    rl.set_defaults(func=cmd_releases)
    df = sub.add_parser("diff", help="what changes between two releases or environments")
    df.add_argument("before", help="a release (id prefix or alias) or an environment")
    df.add_argument("after", help="a release (id prefix or alias) or an environment")
    df.add_argument("--app", help="the application (default: ./relay.yaml's)")
    df.add_argument("--env", help="compare the settings of this environment")
    df.add_argument("--repo", help="the repository, for the commits between")
    df.set_defaults(func=cmd_diff)
    st = sub.add_parser("status", help="what runs where, since when, who approved")
    st.add_argument("--app", help="the application (default: ./relay.yaml's)")
    st.add_argument(
        "--file",
        type=Path,
        default=Path("relay.yaml"),
        help="the application's manifest: its kubernetes environments are read from their "
        "clusters (default: ./relay.yaml, when it is there)",
    )
    st.set_defaults(func=cmd_status)
    h = sub.add_parser("history", help="every deployment attempt of a service")
    h.add_argument("service", help="the service, as named in relay.yaml")
    h.add_argument("--app", help="the application (default: ./relay.yaml's)")
    h.add_argument("--env", default=None, help="only this environment (default: all)")
    h.add_argument("--limit", type=int, default=30, help="how many, newest first (30)")
    h.set_defaults(func=cmd_history)
    lg = sub.add_parser("logs", help="a service's output from CloudWatch Logs, with its version")
    lg.add_argument("service", help="the service, as named in relay.yaml")
    lg.add_argument("--env", required=True, help="the environment")
    lg.add_argument("--app", help="the application (default: ./relay.yaml's)")
    lg.add_argument("--since", default="10m", help="how far back: 90s, 10m, 2h, 1d (10m)")
    lg.add_argument("--follow", action="store_true", help="keep printing new lines (Ctrl-C)")
    lg.set_defaults(func=cmd_logs)
    an = sub.add_parser(
        "analysis",
        help="a canary's recorded analysis windows, or replay them with other limits",
        description="relay analysis SERVICE --env ENV [--run RUN]: the windows of the "
        "service's latest judged canary (or of RUN). relay analysis replay RUN [limits]: judge "
        "RUN's windows again with other limits; prints each step's verdict and where the "
        "canary would have stopped.",
    )
    an.add_argument("service", help="the service, as named in relay.yaml; or `replay`")
    an.add_argument("run_id", nargs="?", help="with `replay`: the canary's run id (or prefix)")
    an.add_argument("--app", help="the application (default: ./relay.yaml's)")
    an.add_argument("--env", help="the environment whose latest canary to show")
    an.add_argument("--run", help="show this run's windows (its id or its deployment's)")
    an.add_argument("--max-error-rate", type=float, help="replay: error-rate limit (0-1)")
    an.add_argument("--max-response-ms", type=int, help="replay: mean response time limit")
    an.add_argument("--min-requests", type=int, help="replay: requests needed to judge a step")
    an.add_argument(
        "--max-error-rate-increase",
        type=float,
        help="replay: how far above the stable version's error rate the canary's may be (0-1)",
    )
    an.add_argument(
        "--max-response-ratio",
        type=float,
        help="replay: the canary's mean response time over the stable's, at most",
    )
    an.add_argument(
        "--on-inconclusive",
        choices=["fail", "pause", "continue"],
        help="replay: what an inconclusive step leads to",
    )
    an.set_defaults(func=cmd_analysis)
    m = sub.add_parser("metrics", help="DORA delivery metrics per service and environment")
    m.add_argument("--app", help="the application (default: ./relay.yaml's)")
    m.add_argument("--env", default=None, help="one environment (default: all)")
    m.add_argument("--days", type=int, default=30, help="the window, in days (30)")
    m.add_argument(
        "--publish",
        action="store_true",
        help="also a table artifact in Prefect and the aggregates in CloudWatch",
    )
    m.add_argument("--namespace", default="Relay", help="CloudWatch namespace (Relay)")
    m.set_defaults(func=cmd_metrics)
    dp = sub.add_parser("deploy", help="register the Prefect deployments of prefect.yaml")
    dp.add_argument("--nightly-repo", help="repository the nightly end-to-end run checks")
    dp.add_argument("--nightly-cron", help='when the nightly run starts, UTC (default "0 2 * * *")')
    dp.add_argument("--pool", help="the work pool to register them on (default: relay)")
    dp.add_argument(
        "--image",
        help="the job image: Relay's worker image (Dockerfile), for a docker, kubernetes or ecs "
        "pool; flows then start from its /opt/relay",
    )
    dp.set_defaults(func=cmd_deploy)
    w = sub.add_parser("webhook", help="receive GitHub/GitLab webhooks that start releases")
    w.add_argument("action", choices=["serve"], help="serve: listen until stopped")
    w.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    w.add_argument("--port", type=int, default=8787, help="port to listen on (8787)")
    w.add_argument(
        "--config",
        type=Path,
        help="YAML: repositories (full name -> url, manifest_file), deployment, state_dir; "
        "secrets come from RELAY_GITHUB_WEBHOOK_SECRET / RELAY_GITLAB_WEBHOOK_TOKEN",
    )
    w.set_defaults(func=cmd_webhook)
    d = sub.add_parser("demo", help="run the example shop from commit to production")
    d.set_defaults(func=cmd_demo)
    iam = sub.add_parser("iam-policy", help="print the least-privilege IAM policy (JSON)")
    iam.add_argument("service", help="the service whose runtime the policy is for")
    iam.add_argument("env", help="the environment it runs in")
    iam.add_argument(
        "--pipeline", action="store_true", help="the pipeline's own policy instead (whole app)"
    )
    iam.add_argument("--file", type=Path, default=Path("relay.yaml"), help="the manifest")
    iam.set_defaults(func=cmd_iam_policy)
    rd = sub.add_parser("render", help="print the Kubernetes objects Relay would apply (YAML)")
    rd.add_argument("service", help="the service to render")
    rd.add_argument("env", help="a kubernetes environment")
    rd.add_argument("--file", type=Path, default=Path("relay.yaml"), help="the manifest")
    rd.add_argument("--image", help="repository@sha256:... (default: what the ledger says runs)")
    rd.set_defaults(func=cmd_render)
    return p


def _verbose_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--verbose",
        action="store_true",
        help="Prefect's log lines here instead of in a file, and tracebacks with errors",
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("relay")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _repository(value: str) -> str:
    """A local repository as an absolute path: runs, the ledger and later commands may start
    elsewhere, where `.` is another directory. A URL is kept as it is."""
    path = Path(value).expanduser()
    return str(path.resolve()) if path.is_dir() else value


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "repo", None):
        args.repo = _repository(args.repo)
    try:
        return int(args.func(args))
    except ManifestError as exc:
        _explain(args, exc)
        return 2
    except RelayError as exc:
        _explain(args, exc, prefix="relay: ")
        return 1
    except devstack.StackError as exc:  # the local stack could not do what was asked
        print(f"relay stack {getattr(args, 'action', '')}: {exc}", file=sys.stderr)
        return 1


def _explain(args: argparse.Namespace, exc: RelayError, prefix: str = "") -> None:
    """An expected failure (bad input, a refused gate, a failed stage) is one message that
    says the fix; its traceback is for `--verbose`. Anything else is a bug and keeps its
    traceback (Python prints it)."""
    if getattr(args, "verbose", False):
        traceback.print_exception(exc)
    print(f"{prefix}{exc}", file=sys.stderr)
    retried = args.command in ("run", "promote", "retry")
    for run_id, name in getattr(args, "runs", {}).items() if retried else ():
        print(f"relay: to run it again: relay retry {run_id}   ({name})", file=sys.stderr)
    log = getattr(args, "log", None)
    if log is not None:
        print(f"relay: the whole log: {log}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
