"""``python -m devstack up|down|status|env|worker-image``: the local stack from the command
line. ``worker-image`` builds Relay's worker image (the project's Dockerfile) on the stack's
engine as ``relay/worker:local``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from devstack import StackError, down, environment, mode_from, stack_paths, status, up
from devstack.tool_images import WORKER_IMAGE, build_worker_image


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = (
        "usage: python -m devstack up [--postgres|--sqlite] [--workers N] | down | status | env "
        "| worker-image"
    )
    options = args[1:]
    postgres, sqlite = "--postgres" in options, "--sqlite" in options
    rest = [o for o in options if o not in {"--postgres", "--sqlite"}]
    workers = (
        int(rest[1]) if len(rest) == 2 and rest[0] == "--workers" and rest[1].isdigit() else None
    )
    valid = not rest or workers is not None
    if (
        not args
        or args[0] not in {"up", "down", "status", "env", "worker-image"}
        or not valid
        or (options and args[0] != "up")
    ):
        print(usage, file=sys.stderr)
        return 2
    try:
        if args[0] == "up":
            up(mode=mode_from(postgres, sqlite, workers))
        elif args[0] == "worker-image":
            project = Path(__file__).resolve().parent.parent
            image = build_worker_image(stack_paths(), project)
            print(f"{WORKER_IMAGE} {image}")
        elif args[0] == "down":
            down()
        elif args[0] == "status":
            st = status()
            print(st)
            return 0 if st.all_running else 3
        else:
            for key, value in environment().items():
                print(f"export {key}={shlex.quote(value)}")
    except StackError as e:
        print(f"relay stack {args[0]}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
