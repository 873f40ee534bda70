"""Command line: parses arguments, runs one command, maps errors to exit codes."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(f"reconcile: not implemented yet: {' '.join(args)}", file=sys.stderr)
    return 2
