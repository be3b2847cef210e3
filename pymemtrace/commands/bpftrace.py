"""``pymemtrace bpftrace``: run the Linux versions of the DTrace scripts and report.

``list`` names the scripts, ``run`` checks what bpftrace needs (the program,
privileges, tracefs, a Python with USDT probes), runs one script against a
process or a command and saves its output, and ``report`` turns that output
into tables sorted by bytes (or JSON).  The work is in
:mod:`pymemtrace.bpftrace_run`, :mod:`pymemtrace.readers.bpftrace_log` and
:mod:`pymemtrace.reporters.bpftrace`.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import textwrap

from pymemtrace.bpftrace_run import (BpftraceError, run, script_names, script_summary,
                                     scripts_dir)
from pymemtrace.commands import UserError
from pymemtrace.readers import bpftrace_log
from pymemtrace.reporters.bpftrace import format_report


# ---- the subcommands ------------------------------------------------------------------------------

def _user_errors(cmd):
    """What the engine says is missing (BpftraceError) is the user's to fix: one line, exit 2."""
    @functools.wraps(cmd)
    def run_cmd(args: argparse.Namespace) -> int:
        try:
            return cmd(args)
        except BpftraceError as err:
            raise UserError(str(err)) from None
    return run_cmd


@_user_errors
def _cmd_list(args: argparse.Namespace) -> int:
    d = scripts_dir()
    for name in script_names():
        text = textwrap.fill(script_summary(d / f"{name}.bt"), width=98,
                             initial_indent=f"{name:<22} ", subsequent_indent=" " * 23)
        print(text)
    print(f"\n(scripts in {d})")
    return 0


@_user_errors
def _cmd_run(args: argparse.Namespace) -> int:
    rest = list(args.target or [])
    pid, output = args.pid, args.output
    # -p / -o written after the script name arrive here, because argparse
    # hands everything after the first positional to REMAINDER; argparse
    # may or may not have removed the '--' before the command.
    i = 0
    while i < len(rest):
        tok = rest[i]
        if tok == "--":
            i += 1
            break
        name, eq, value = tok.partition("=")
        if name in ("-p", "--pid", "-o", "--output"):
            if not eq:
                if i + 1 >= len(rest):
                    raise UserError(f"argument {name}: expected one argument")
                value = rest[i + 1]
                i += 1
            i += 1
            if name in ("-p", "--pid"):
                try:
                    pid = _pid(value)
                except argparse.ArgumentTypeError as err:
                    raise UserError(f"argument -p/--pid: {err}") from None
            else:
                output = value
            continue
        if tok.startswith("-"):
            raise UserError(f"unknown option {tok!r}; put the command to trace after '--'")
        break
    command = rest[i:]
    rc, _ = run(args.script, pid, command, output)
    return rc


@_user_errors
def _cmd_report(args: argparse.Namespace) -> int:
    try:
        rep = bpftrace_log.parse_file(args.file)
    except bpftrace_log.ReportError as err:
        raise UserError(str(err)) from None
    try:
        if args.json:
            print(json.dumps(rep.to_json(), indent=2))
        else:
            for w in rep.warnings:
                print(f"pymemtrace bpftrace report: warning: {w}", file=sys.stderr)
            sys.stdout.write(format_report(rep, args.limit))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (head, less) went away: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _pid(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a process ID: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a process ID: {text!r}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bpftrace",
        help="run the bpftrace (DTrace-style) scripts and report their output",
        description="Linux versions of pymemtrace's DTrace scripts, run with bpftrace "
                    "(needs root and a Python with USDT probes, e.g. /usr/bin/python3.11).",
        epilog="Example:\n  sudo pymemtrace bpftrace run py_malloc -o out.txt -- "
               "/usr/bin/python3.11 myscript.py\n  pymemtrace bpftrace report out.txt",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="bpftrace_command", metavar="ACTION")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    pl = sub.add_parser("list", help="list the scripts and what each prints",
                        epilog="Example:\n  pymemtrace bpftrace list",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pl.set_defaults(func=_cmd_list)

    pr = sub.add_parser(
        "run", help="run a script on a process or a command and save its output",
        description="Run one script with bpftrace.  With -p it traces a running process "
                    "until it exits or you press Ctrl-C; with a command after '--' it "
                    "attaches the probes first, then starts the command.",
        epilog="Examples:\n  sudo pymemtrace bpftrace run py_malloc -- /usr/bin/python3.11 app.py\n"
               "  sudo pymemtrace bpftrace run py_flowinfo -p 1234 -o flow.txt",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    pr.add_argument("script", help="script name (see 'pymemtrace bpftrace list')")
    pr.add_argument("-p", "--pid", type=_pid, help="trace this running process")
    pr.add_argument("-o", "--output", help="save the output here (default: "
                    "NAME_YYYYmmdd_HHMMSS_LABEL.txt in the current directory, never overwritten)")
    pr.add_argument("target", nargs=argparse.REMAINDER, metavar="-- CMD ARGS",
                    help="the command to start and trace, after '--'")
    pr.set_defaults(func=_cmd_run)

    prep = sub.add_parser(
        "report", help="summarise a saved output by function and by file, sorted by bytes",
        epilog="Example:\n  pymemtrace bpftrace report py_malloc_out.txt --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    prep.add_argument("file", help="output saved by 'pymemtrace bpftrace run'")
    prep.add_argument("--json", action="store_true",
                      help="print JSON: {by_function: [{function, file, line, bytes, count}], ...}")
    prep.add_argument("--limit", type=int, default=20,
                      help="rows per table in the text report (0: all; default 20)")
    prep.set_defaults(func=_cmd_report)
