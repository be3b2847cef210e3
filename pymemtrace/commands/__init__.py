"""The ``pymemtrace`` command: one subcommand per tool.

Each tool's command line lives in its own module (``pymemtrace.commands.<tool>``)
that provides ``register(subparsers)``; this module only dispatches.  User
errors are reported as one line on stderr with exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import List, Optional

from pymemtrace import __version__

# (subcommand module suffix) in the order --help lists them.
_TOOLS = (
    "trace",
    "process",
    "malloc",
    "bpftrace",
)


class UserError(Exception):
    """An error in what the user asked for: printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pymemtrace",
        description="Where does a Python program's memory go?  One subcommand per tool.",
        epilog="Run 'pymemtrace SUBCOMMAND --help' for each tool's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"pymemtrace {__version__}")
    sub = parser.add_subparsers(dest="pymemtrace_tool", metavar="SUBCOMMAND")
    for name in _TOOLS:
        try:
            mod = importlib.import_module(f"pymemtrace.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"pymemtrace.commands.{name}":
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        rc = int(func(args) or 0)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        # The reader of our output (head, less) went away: not an error of
        # ours, and no traceback.  Point stdout at /dev/null so the flush at
        # exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except UserError as err:
        print(f"pymemtrace {args.pymemtrace_tool}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pymemtrace {args.pymemtrace_tool}: interrupted", file=sys.stderr)
        return 130
