"""``python -m devstack up|down|status|env``: the local stack from the command line."""

from __future__ import annotations

import shlex
import sys

from devstack import StackError, down, environment, status, up


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m devstack up|down|status|env"
    if len(args) != 1 or args[0] not in {"up", "down", "status", "env"}:
        print(usage, file=sys.stderr)
        return 2
    try:
        if args[0] == "up":
            up()
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
