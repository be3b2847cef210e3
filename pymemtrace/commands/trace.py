"""``pymemtrace trace``: run a Python script under cPyMemTrace and summarise its log.

``pymemtrace trace [--profile|--trace] [-d N] [-o LOG] script.py [args...]`` runs
the script in this interpreter (as ``python script.py args`` would, with
``__name__ == "__main__"``) inside :class:`cPyMemTrace.Profile` (default) or
:class:`cPyMemTrace.Trace`, then prints where the log went and the events with
the largest RSS changes.  ``pymemtrace trace report LOG`` summarises an existing
log.  The exit code is the script's own.
"""
from __future__ import annotations

import argparse
import os
import runpy
import sys
import traceback
import typing

from pymemtrace.readers import cpmt_log
from pymemtrace.commands import UserError

EXAMPLE = """\
examples:
  pymemtrace trace examples/ex_cPyMemTrace.py          # Profile, log when RSS moves >= 1 page
  pymemtrace trace --trace -d 0 myscript.py arg1       # Trace (adds LINE events), log every event
  pymemtrace trace -d 1048576 -o run.log job.py        # only changes of 1 MiB or more, into run.log
  pymemtrace trace report 20241107_195847_62264_P_1_PY3.11.7.log
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace",
        help="run a Python script under cPyMemTrace (RSS at every call/return) and summarise",
        description=(
            "Run SCRIPT under cPyMemTrace.Profile (or Trace with --trace): the RSS is logged "
            "at Python and C calls and returns where it changed by at least the trigger. "
            "Prints the log's path and the events with the largest RSS changes. "
            "'pymemtrace trace report LOG' summarises an existing log."
        ),
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--profile", dest="mode", action="store_const", const="profile",
                      help="profile function: calls and returns, Python and C (the default)")
    mode.add_argument("--trace", dest="mode", action="store_const", const="trace",
                      help="trace function: Python calls, returns and every LINE")
    p.add_argument("-d", "--d-rss-trigger", type=int, default=-1, metavar="N",
                   help="log an event when |dRSS| >= N bytes; 0 logs every event, "
                        "-1 (default) is the page size")
    p.add_argument("-o", "--output", metavar="LOG",
                   help="write the log here (default: a new YYYYMMDD_HHMMSS_PID_P_n_PYx.y.z.log "
                        "in the current directory)")
    p.add_argument("-n", "--top", type=int, default=10, metavar="N",
                   help="how many of the largest changes to print (default 10)")
    p.add_argument("script", metavar="SCRIPT|report",
                   help="the Python script to run, or 'report' followed by a log to summarise")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    p.set_defaults(func=run, mode="profile")


def _fmt_bytes(n: int) -> str:
    sign = "-" if n < 0 else "+"
    n = abs(n)
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{sign}{n / div:.1f} {unit}"
    return f"{sign}{n} B"


def summarise(summary: cpmt_log.Summary, out: typing.TextIO) -> None:
    """Print *summary* (:func:`cpmt_log.summarise`): the largest changes, then net
    change by function."""
    print(f"{summary.records} rows ({summary.next_records} NEXT) in {summary.path}", file=out)
    if summary.first_rss is not None and summary.last is not None:
        first_rss, (rss, event, clock) = summary.first_rss, summary.last
        print(f"RSS {first_rss:,d} -> {rss:,d} bytes ({_fmt_bytes(rss - first_rss)}) "
              f"over {event:,d} events, {clock:.3f} s", file=out)
    if summary.truncated:
        print("warning: the last line was cut short (the program died while writing?)", file=out)
    elif not summary.complete:
        print("warning: the log has no clean-end line (the profiler did not detach cleanly)",
              file=out)
    biggest = summary.largest
    if not biggest:
        print("no RSS changes were logged", file=out)
        return
    print(f"\nLargest RSS changes (top {len(biggest)}):", file=out)
    print(f"  {'dRSS':>12} {'event':>8} {'What':<11} {'Function':<28} File#line", file=out)
    for r in biggest:
        print(f"  {r.d_rss:>+12,d} {r.event:>8d} {r.what:<11} {r.function:<28} {r.file}#{r.line}",
              file=out)
    funcs = summary.by_function
    if funcs:
        print(f"\nNet RSS change by function (top {len(funcs)}):", file=out)
        for fn, f, d, n in funcs:
            print(f"  {d:>+12,d} in {n:>5d} rows  {fn} ({f})", file=out)


def _report(args: argparse.Namespace) -> int:
    # -n/--top may also come after 'report' (argparse hands everything after it here)
    rest, top, paths = list(args.args), args.top, []
    while rest:
        a = rest.pop(0)
        value = None
        if a in ("-n", "--top") and rest:
            value = rest.pop(0)
        elif a.startswith("--top="):
            value = a[len("--top="):]
        elif a.startswith("-n") and len(a) > 2:
            value = a[2:]
        else:
            paths.append(a)
            continue
        try:
            top = int(value)
        except ValueError:
            raise UserError(f"--top must be a number, not {value!r}")
    if len(paths) != 1:
        raise UserError("usage: pymemtrace trace report [-n N] LOG")
    path = paths[0]
    try:
        summary = cpmt_log.summarise(path, top)
    except FileNotFoundError:
        raise UserError(f"no such log: {path}")
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a log")
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}")
    except ValueError as err:
        raise UserError(str(err))
    summarise(summary, sys.stdout)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.script == "report":
        return _report(args)
    if args.top < 0:
        raise UserError(f"--top must be >= 0, not {args.top}")
    if args.d_rss_trigger < -1:
        raise UserError(f"--d-rss-trigger must be -1 (page size), 0 (every event) or a "
                        f"positive number of bytes, not {args.d_rss_trigger}")
    script = args.script
    if not os.path.exists(script):
        raise UserError(f"no such script: {script}")
    if os.path.isdir(script) and not os.path.exists(os.path.join(script, "__main__.py")):
        raise UserError(f"{script} is a directory without __main__.py")
    from pymemtrace import cPyMemTrace

    cls = cPyMemTrace.Trace if args.mode == "trace" else cPyMemTrace.Profile
    get_path = cPyMemTrace.trace_log_path if args.mode == "trace" else cPyMemTrace.profile_log_path
    # Run the script as `python script args` would: its own argv and sys.path[0].
    saved_argv, saved_path0 = sys.argv[:], sys.path[0] if sys.path else None
    sys.argv = [script] + list(args.args)
    script_dir = os.path.dirname(os.path.abspath(script))
    if sys.path:
        sys.path[0] = script_dir
    else:
        sys.path.insert(0, script_dir)
    rc = 0
    log_path = None
    message = f"pymemtrace trace {script}"
    try:
        tracer = cls(args.d_rss_trigger, message=message, filepath=args.output)
    except (OSError, ValueError, TypeError) as err:
        raise UserError(str(err))
    try:
        try:
            with tracer:
                log_path = get_path()
                runpy.run_path(script, run_name="__main__")
        except OSError as err:
            if log_path is None:   # the tracer could not open its log
                raise UserError(f"cannot write the log: {err}")
            if err.filename != log_path:
                raise              # the script's own error
            # the tracer failed to write its log (e.g. disk full): it has
            # detached; what it wrote before the failure is kept
            print(f"pymemtrace trace: error: writing the log {log_path} failed: "
                  f"{err.strerror}; the log holds what was written before", file=sys.stderr)
            rc = 1
    except SystemExit as exc:
        code = exc.code
        if code is None:
            rc = 0
        elif isinstance(code, int):
            rc = code
        else:
            print(code, file=sys.stderr)
            rc = 1
    except KeyboardInterrupt:
        print("pymemtrace trace: interrupted; the log is complete up to here", file=sys.stderr)
        rc = 130
    except UserError:
        raise
    except BaseException:  # the script's own error: show it as python would, then summarise
        traceback.print_exc()
        rc = 1
    finally:
        sys.argv = saved_argv
        if saved_path0 is not None and sys.path:
            sys.path[0] = saved_path0
    if log_path is None:
        log_path = getattr(tracer, "log_path", None)
    out = sys.stderr if rc else sys.stdout
    if log_path and os.path.isfile(log_path):   # not a device such as /dev/full
        print(f"\npymemtrace trace: log written to {log_path}", file=out)
        try:
            summarise(cpmt_log.summarise(log_path, args.top), out)
        except (OSError, ValueError) as err:
            print(f"pymemtrace trace: cannot summarise {log_path}: {err}", file=out)
    return rc
