"""``python -m fake_tenant serve ...``: the same as ``msteams emulator serve``."""
from __future__ import annotations

import sys

from .serve import main as serve_main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "serve":
        print("usage: python -m fake_tenant serve [--port N] [--tenant FILE] [--users N] [--tenants N] [--speed X] "
              "[--throttling|--no-throttling] [--write-config PATH]", file=sys.stderr)
        return 2
    return serve_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
