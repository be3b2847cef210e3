"""``pymemtrace malloc``: every malloc/free of a program, attributed to Python lines.

``pymemtrace malloc [-o FILE] [--native] -- CMD ARGS...`` runs CMD with the
preload library ``libpymemtrace_malloc.so`` (no root needed) and exits with
CMD's exit code.  ``report``, ``flamegraph`` and ``export`` read a capture
(:mod:`pymemtrace.commands.malloc_report`).  The reading and aggregation are C
(``pymemtrace._malloccap``); this module only starts the program.
"""
from __future__ import annotations

import argparse
import errno
import glob
import os
import pathlib
import shutil
import subprocess
import sys
from typing import List, Optional, Sequence

from pymemtrace.commands import UserError
from pymemtrace.malloc import LIBRARY
from pymemtrace.readers.malloc_capture import capture_header, stop_reason


ENV_OUT = "PYMEMTRACE_MALLOC_OUT"
ENV_NATIVE = "PYMEMTRACE_MALLOC_NATIVE"
ENV_START = "PYMEMTRACE_MALLOC_START"
ENV_STACKS = "PYMEMTRACE_MALLOC_STACKS"
ENV_AGGREGATE = "PYMEMTRACE_MALLOC_AGGREGATE"
ENV_CHECKPOINT = "PYMEMTRACE_MALLOC_CHECKPOINT"

_RUN_EXAMPLE = """\
examples:
  pymemtrace malloc -o app.cap -- python app.py --size 10
  pymemtrace malloc --stacks -o app.cap -- python app.py   # whole Python stacks
  pymemtrace malloc --aggregate -o svc.cap -- python service.py  # bounded, checkpointed
  pymemtrace malloc report app.cap            # live at the peak, by stack
  pymemtrace malloc report app.cap --view leaks --json
  pymemtrace malloc flamegraph app.cap -o app.html
  pymemtrace malloc export app.cap --format pprof -o app.pb.gz
  pymemtrace malloc attach 4242 --duration 30 -o svc.cap   # a running process (gdb)
  (pymemtrace malloc report --help: every view and option)

Captures: the traced process writes FILE; any other process that inherits
the environment (a forked child, a program it starts) writes FILE.<pid>.
"""


def register(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "malloc",
        help="trace every malloc/free of a program, attributed to Python lines (no root)",
        description=(
            "Run CMD under an LD_PRELOAD malloc tracer that attributes each allocation "
            "(malloc, calloc, realloc, free, the memalign family, anonymous mmap/munmap) "
            "to the Python function and line that made it; or read a capture: 'report' "
            "(views: peak, leaks, all, time, summary), 'flamegraph' (one HTML file), "
            "'export' (pprof, collapsed stacks)."
        ),
        usage="pymemtrace malloc [-o FILE] [--native] [--stacks] [--aggregate [--checkpoint S]] "
              "[--python-malloc] [--paused] "
              "-- CMD [ARGS...]\n"
              "       pymemtrace malloc report FILE [--view peak|leaks|all|time|summary] "
              "[--range A:B] [--thread ID] [--json]\n"
              "       pymemtrace malloc flamegraph FILE [-o OUT.html]\n"
              "       pymemtrace malloc export FILE [--format pprof|collapsed] [-o OUT]\n"
              "       pymemtrace malloc attach PID [--duration S] [--native] [-o FILE]",
        epilog=_RUN_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-o", "--output", metavar="FILE",
                   help="capture path (default: pymemtrace-malloc-<pid>.cap here)")
    p.add_argument("--native", action="store_true",
                   help="also record each allocation's native caller (return address)")
    p.add_argument("--python-malloc", action="store_true",
                   help="run Python with PYTHONMALLOC=malloc so every object is a malloc "
                        "(slower; without it small objects appear as 1 MiB arena mmaps)")
    p.add_argument("--stacks", action="store_true",
                   help="record each allocation's whole Python stack (interned in the "
                        "capture): reports and flame graphs show whole stacks and charge every "
                        "function on them; without it each stack is its innermost line")
    p.add_argument("--aggregate", action="store_true",
                   help="bounded capture for long runs: no events, totals per whole stack "
                        "(allocated, live at the peak, live now) written as a complete "
                        "checkpoint every --checkpoint seconds, so a capture killed by "
                        "SIGKILL reads as of its last checkpoint; its size grows with "
                        "distinct stacks, not with events")
    p.add_argument("--checkpoint", type=float, metavar="SECONDS", default=None,
                   help="--aggregate: seconds between checkpoints (default 1; 0.05 to 86400)")
    p.add_argument("--paused", action="store_true",
                   help="start with tracing paused: the program traces chosen blocks with "
                        "pymemtrace.malloc.Tracing()")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD",
                   help="the command to run (after --), or: report|flamegraph|export FILE ..., "
                        "or attach PID ...")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    command: List[str] = list(args.command)
    explicit_dashes = bool(command) and command[0] == "--"
    if explicit_dashes:
        command = command[1:]
    if command and command[0] in ("report", "flamegraph", "export") and not explicit_dashes:
        from pymemtrace.commands import malloc_report
        return malloc_report.main(command[0], command[1:])
    if command and command[0] == "attach" and not explicit_dashes:
        from pymemtrace.commands import malloc_attach
        return malloc_attach.main(command[1:])
    if args.checkpoint is not None:
        if not args.aggregate:
            raise UserError("--checkpoint SECONDS goes with --aggregate")
        if not 0.05 <= args.checkpoint <= 86400:
            raise UserError(f"--checkpoint must be seconds from 0.05 to 86400, "
                            f"not {args.checkpoint:g}")
    return run(command, args.output, args.native, args.python_malloc, args.paused, args.stacks,
               aggregate=args.aggregate, checkpoint=args.checkpoint)


# ---- run --------------------------------------------------------------------


def _resolve_command(name: str) -> Optional[str]:
    if os.sep in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name)


def _prepare_capture(path: str, explicit: bool) -> None:
    """Make sure the tracer can create `path` (O_EXCL) before anything runs."""
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            raise UserError(f"capture path {path} is a directory")
        if not explicit:
            raise UserError(f"capture path {path} already exists; choose one with -o")
        try:
            os.unlink(path)     # -o names it: replace it (a symlink itself, never its target)
        except OSError as err:
            raise UserError(f"cannot replace the capture {path}: {err.strerror}") from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        raise UserError(f"cannot write the capture {path}: {err.strerror}") from None
    os.close(fd)
    os.unlink(path)


def _siblings(path: str) -> set:
    return {p for p in glob.glob(glob.escape(path) + ".*") if p[len(path) + 1:][:1].isdigit()}


def run(command: Sequence[str], output: Optional[str], native: bool,
        python_malloc: bool, paused: bool = False, stacks: bool = False,
        aggregate: bool = False, checkpoint: Optional[float] = None) -> int:
    if not command:
        raise UserError("no command given: pymemtrace malloc [-o FILE] -- CMD [ARGS...]")
    exe = _resolve_command(command[0])
    if exe is None:
        if os.sep in command[0] and os.path.exists(command[0]):
            what = "is a directory" if os.path.isdir(command[0]) else "is not executable"
            print(f"pymemtrace malloc: error: cannot run {command[0]}: it {what}",
                  file=sys.stderr)
            return 126
        print(f"pymemtrace malloc: error: command not found: {command[0]}", file=sys.stderr)
        return 127
    if not LIBRARY.exists():
        raise UserError(f"the preload library is missing: {LIBRARY} (reinstall pymemtrace)")
    explicit = output is not None
    path = os.path.abspath(output if explicit else f"pymemtrace-malloc-{os.getpid()}.cap")
    _prepare_capture(path, explicit)
    before = _siblings(path)

    env = dict(os.environ)
    preload = env.get("LD_PRELOAD", "")
    env["LD_PRELOAD"] = str(LIBRARY) + (" " + preload if preload else "")
    env[ENV_OUT] = path
    if native:
        env[ENV_NATIVE] = "1"
    else:
        env.pop(ENV_NATIVE, None)
    if stacks:
        env[ENV_STACKS] = "1"
    else:
        env.pop(ENV_STACKS, None)
    env.pop(ENV_AGGREGATE, None)
    env.pop(ENV_CHECKPOINT, None)
    if aggregate:
        env[ENV_AGGREGATE] = "1"
        if checkpoint is not None:
            env[ENV_CHECKPOINT] = repr(float(checkpoint))
    if python_malloc:
        env["PYTHONMALLOC"] = "malloc"
    if paused:
        env[ENV_START] = "paused"
    else:
        env.pop(ENV_START, None)

    try:
        proc = subprocess.Popen([exe, *command[1:]], env=env, executable=exe)
    except OSError as err:
        code = 126 if err.errno in (errno.EACCES, errno.ENOEXEC) else 127
        print(f"pymemtrace malloc: error: cannot run {command[0]}: {err.strerror}",
              file=sys.stderr)
        return code
    while True:
        try:
            rc = proc.wait()
            break
        except KeyboardInterrupt:
            # Ctrl-C reached the program too (same process group): let it decide.
            continue

    others = sorted(_siblings(path) - before)
    _finish_captures(command[0], path, others)
    return rc if rc >= 0 else 128 - rc


def _finish_captures(name: str, path: str, others: List[str]) -> None:
    """After the run: pack every capture it wrote, say where they are and
    whether any stopped early (a full disk)."""
    from pymemtrace import _malloccap

    written = []
    for p in [path] + others:
        try:
            if os.path.getsize(p) == 0:
                print(f"pymemtrace malloc: warning: {p} is empty (0 bytes) and was removed",
                      file=sys.stderr)
                os.unlink(p)
                continue
        except OSError:
            continue
        written.append(p)
        h = capture_header(p)
        if h and h["stop_errno"] and h["aggregate"]:
            print(f"pymemtrace malloc: warning: the checkpoints of {p} stopped at event "
                  f"{h['stop_events']:,} because {stop_reason(h['stop_errno'])}; the last one "
                  "written is what the capture holds", file=sys.stderr)
        elif h and h["stop_errno"]:
            print(f"pymemtrace malloc: warning: the capture {p} stopped at event "
                  f"{h['stop_events']:,} because {stop_reason(h['stop_errno'])}; "
                  f"{h['dropped']:,} later events were not recorded", file=sys.stderr)
        try:
            _malloccap.pack(p)
        except OSError as err:
            print(f"pymemtrace malloc: warning: {err}", file=sys.stderr)
    if path in written:
        print(f"pymemtrace malloc: capture in {path}; read it with: "
              f"pymemtrace malloc report {path}", file=sys.stderr)
    else:
        print(f"pymemtrace malloc: warning: {name} wrote no capture at {path} "
              "(a static or setuid program ignores LD_PRELOAD)", file=sys.stderr)
    others = [p for p in written if p != path]
    if others:
        print(f"pymemtrace malloc: other processes wrote {len(others)} capture(s): "
              + ", ".join(others[:10]) + (" ..." if len(others) > 10 else ""), file=sys.stderr)
