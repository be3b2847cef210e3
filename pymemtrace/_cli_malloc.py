"""``pymemtrace malloc``: every malloc/free of a program, attributed to Python lines.

``pymemtrace malloc [-o FILE] [--native] -- CMD ARGS...`` runs CMD with the
preload library ``libpymemtrace_malloc.so`` (no root needed) and exits with
CMD's exit code; ``pymemtrace malloc report FILE [--json]`` reads the capture.
The reading and aggregation are C (``pymemtrace._malloccap``); this module
only starts the program and prints the aggregated rows.
"""
from __future__ import annotations

import argparse
import errno
import glob
import json
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any, Dict, List, Optional, Sequence

from pymemtrace.cli import UserError

LIBRARY = pathlib.Path(__file__).resolve().parent / "libpymemtrace_malloc.so"

ENV_OUT = "PYMEMTRACE_MALLOC_OUT"
ENV_NATIVE = "PYMEMTRACE_MALLOC_NATIVE"
ENV_START = "PYMEMTRACE_MALLOC_START"
ENV_STACKS = "PYMEMTRACE_MALLOC_STACKS"

_RUN_EXAMPLE = """\
examples:
  pymemtrace malloc -o app.cap -- python app.py --size 10
  pymemtrace malloc report app.cap            # text report
  pymemtrace malloc report app.cap --json     # the same as JSON

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
            "to the Python function and line that made it; or, with 'report FILE', "
            "summarise a capture."
        ),
        usage="pymemtrace malloc [-o FILE] [--native] [--stacks] [--python-malloc] [--paused] "
              "-- CMD [ARGS...]\n"
              "       pymemtrace malloc report FILE [--json] [--top N]",
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
                        "capture); the report still attributes by the innermost line")
    p.add_argument("--paused", action="store_true",
                   help="start with tracing paused: the program traces chosen blocks with "
                        "pymemtrace.malloc.Tracing()")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD",
                   help="the command to run (after --), or: report FILE [--json]")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    command: List[str] = list(args.command)
    explicit_dashes = bool(command) and command[0] == "--"
    if explicit_dashes:
        command = command[1:]
    if command and command[0] == "report" and not explicit_dashes:
        return report_main(command[1:])
    return run(command, args.output, args.native, args.python_malloc, args.paused, args.stacks)


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
        python_malloc: bool, paused: bool = False, stacks: bool = False) -> int:
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
    if os.path.exists(path):
        print(f"pymemtrace malloc: capture in {path}; read it with: "
              f"pymemtrace malloc report {path}", file=sys.stderr)
    else:
        print(f"pymemtrace malloc: warning: {command[0]} wrote no capture at {path} "
              "(a static or setuid program ignores LD_PRELOAD)", file=sys.stderr)
    if others:
        print(f"pymemtrace malloc: other processes wrote {len(others)} capture(s): "
              + ", ".join(others[:10]) + (" ..." if len(others) > 10 else ""), file=sys.stderr)
    return rc if rc >= 0 else 128 - rc


# ---- report -------------------------------------------------------------------

_SITE_FIELDS = ("file", "function", "line", "bytes", "count", "malloc_bytes", "malloc_count",
                "mmap_bytes", "mmap_count", "live_bytes", "live_count")
_NATIVE_FIELDS = ("module", "symbol", "offset", "address", "bytes", "count", "malloc_bytes",
                  "malloc_count", "mmap_bytes", "mmap_count", "live_bytes", "live_count")


def load(path: str) -> Dict[str, Any]:
    """Read and aggregate the capture at `path` (in C) into a dict.

    The dict has the totals (``total_bytes``, ``peak_bytes``, ...), the Python
    sites (``by_python_site``: dicts with file, function, line, bytes, count,
    malloc/mmap splits and what is still live), ``leaks`` (the sites with live
    blocks at the end), ``largest`` allocations and, with --native captures,
    ``by_native_site``.  Raises ValueError if the capture cannot be read.
    """
    from pymemtrace import _malloccap

    raw = _malloccap.read(path)
    sites = [dict(zip(_SITE_FIELDS, s)) for s in raw.pop("py_sites")]
    native = [dict(zip(_NATIVE_FIELDS, s)) for s in raw.pop("native_sites")]
    largest = []
    for size, kind, freed, py_index, nat_index in raw.pop("largest"):
        site = sites[py_index]
        row = {"size": size, "kind": kind, "freed": freed, "file": site["file"],
               "line": site["line"], "function": site["function"]}
        if nat_index is not None:
            n = native[nat_index]
            row["native"] = _native_name(n)
        largest.append(row)
    leaks = [
        {"file": s["file"], "line": s["line"], "function": s["function"],
         "bytes": s["live_bytes"], "count": s["live_count"]}
        for s in sites if s["live_count"]
    ]
    leaks.sort(key=lambda s: (-s["bytes"], -s["count"]))
    raw["by_python_site"] = sites
    raw["by_python_function"] = _by_function(sites)
    raw["leaks"] = leaks
    raw["largest"] = largest
    if raw["native"]:
        raw["by_native_site"] = native
        raw["native_leaks"] = sorted(
            ({"module": n["module"], "symbol": n["symbol"], "offset": n["offset"],
              "bytes": n["live_bytes"], "count": n["live_count"]}
             for n in native if n["live_count"]),
            key=lambda s: (-s["bytes"], -s["count"]))
    raw["warnings"] = _warnings(raw)
    return raw


def _by_function(sites: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The per-line sites summed per (file, function): one row per site, not per event."""
    acc: Dict[tuple, Dict[str, Any]] = {}
    for s in sites:
        key = (s["file"], s["function"])
        row = acc.get(key)
        if row is None:
            row = acc[key] = {"file": s["file"], "function": s["function"], "bytes": 0,
                              "count": 0, "malloc_bytes": 0, "mmap_bytes": 0,
                              "live_bytes": 0, "live_count": 0, "lines": 0}
        for k in ("bytes", "count", "malloc_bytes", "mmap_bytes", "live_bytes", "live_count"):
            row[k] += s[k]
        row["lines"] += 1
    return sorted(acc.values(), key=lambda r: (-r["bytes"], -r["count"]))


def _native_name(n: Dict[str, Any]) -> str:
    mod = os.path.basename(n["module"]) or "?"
    return f"{mod}!{n['symbol']}" if n["symbol"] else f"{mod}+{n['offset']:#x}"


def _warnings(r: Dict[str, Any]) -> List[str]:
    out = []
    if not r["complete"]:
        out.append("the capture has no end record: the program crashed or was killed, so "
                   "its last buffered events are missing and 'live at exit' over-counts")
    if r["ended_by_exec"]:
        out.append("this process then called exec: the program it became wrote its own "
                   "capture (see the list 'pymemtrace malloc' printed)")
    if r["trailing_bytes"]:
        out.append(f"the capture ends with {r['trailing_bytes']} bytes of a cut-short or "
                   "corrupt record; everything before it was read")
    if r["dropped"]:
        out.append(f"the tracer could not write {r['dropped']} events")
    if r["python_status"] == "mismatch":
        out.append(f"Python frames not available: the tracer does not read the frames of "
                   f"Python {_pyver(r['python_hex'])} ({_unread_why(r['python_hex'])}); "
                   "allocations are recorded without them")
    elif r["python_status"] == "none":
        out.append("no Python interpreter in the traced process: no Python attribution")
    return out


# The CPython versions whose frames the preload library reads (src/preload/pylayout.h).
FRAMES_READ = ((3, 9), (3, 10), (3, 11), (3, 12), (3, 13))


def _unread_why(hexversion: int) -> str:
    if (hexversion >> 24, (hexversion >> 16) & 0xff) in FRAMES_READ:
        return "a debug or free-threaded build"
    first, last = FRAMES_READ[0], FRAMES_READ[-1]
    return f"it reads CPython {first[0]}.{first[1]} to {last[0]}.{last[1]}"


def _pyver(hexversion: int) -> str:
    if not hexversion:
        return "unknown version"
    return f"{hexversion >> 24}.{(hexversion >> 16) & 0xff}.{(hexversion >> 8) & 0xff}"


def _fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _site_name(s: Dict[str, Any]) -> str:
    if s["file"] == "<no Python frame>":
        return "<no Python frame>"
    return f"{s['file']}:{s['line']} {s['function']}"


def format_report(r: Dict[str, Any], path: str, top: int = 20) -> str:
    lines = []
    lines.append(f"pymemtrace malloc report: {path}")
    lines.append(f"  process {r['pid']} (parent {r['ppid']}), Python {_pyver(r['python_hex'])}, "
                 f"{r['events']} events" + (", native callers" if r["native"] else ""))
    for w in r["warnings"]:
        lines.append(f"  warning: {w}")
    lines.append("")
    lines.append(f"Total allocated:  {r['total_bytes']:>15,} bytes in {r['total_count']:,} "
                 f"allocations ({_fmt_bytes(r['total_bytes'])})")
    lines.append(f"  malloc family:  {r['malloc_bytes']:>15,} bytes in {r['malloc_count']:,}")
    lines.append(f"  anonymous mmap: {r['mmap_bytes']:>15,} bytes in {r['mmap_count']:,} "
                 "(pymalloc arenas of small Python objects come this way)")
    lines.append(f"Peak live heap:   {r['peak_bytes']:>15,} bytes ({_fmt_bytes(r['peak_bytes'])}; "
                 f"malloc peak {r['peak_malloc_bytes']:,}, mmap peak {r['peak_mmap_bytes']:,})")
    lines.append(f"Live at exit:     {r['live_bytes']:>15,} bytes in {r['live_count']:,} blocks")
    lines.append("")
    lines.append(f"Top {top} Python sites by bytes allocated:")
    lines.append(f"  {'bytes':>14} {'count':>9} {'malloc':>14} {'mmap':>12}  site")
    for s in r["by_python_site"][:top]:
        lines.append(f"  {s['bytes']:>14,} {s['count']:>9,} {s['malloc_bytes']:>14,} "
                     f"{s['mmap_bytes']:>12,}  {_site_name(s)}")
    lines.append("")
    lines.append(f"Top {top} Python functions by bytes allocated (all their lines):")
    lines.append(f"  {'bytes':>14} {'count':>9} {'live at exit':>14}  function")
    for f in r["by_python_function"][:top]:
        name = ("<no Python frame>" if f["file"] == "<no Python frame>"
                else f"{f['file']} {f['function']}")
        lines.append(f"  {f['bytes']:>14,} {f['count']:>9,} {f['live_bytes']:>14,}  {name}")
    if r.get("by_native_site") is not None:
        lines.append("")
        lines.append(f"Top {top} native callers by bytes allocated:")
        lines.append(f"  {'bytes':>14} {'count':>9}  caller")
        for n in r["by_native_site"][:top]:
            lines.append(f"  {n['bytes']:>14,} {n['count']:>9,}  {_native_name(n)}")
    lines.append("")
    lines.append(f"Leak candidates (still allocated at exit), top {top} sites:")
    lines.append(f"  {'bytes':>14} {'count':>9}  site")
    for s in r["leaks"][:top]:
        lines.append(f"  {s['bytes']:>14,} {s['count']:>9,}  {_site_name(s)}")
    if r.get("native_leaks"):
        lines.append("")
        lines.append(f"Leak candidates by native caller, top {top}:")
        for n in r["native_leaks"][:top]:
            lines.append(f"  {n['bytes']:>14,} {n['count']:>9,}  {_native_name(n)}")
    lines.append("")
    lines.append("Largest single allocations:")
    lines.append(f"  {'bytes':>14} {'kind':>8} {'state':>6}  site")
    for b in r["largest"]:
        where = _site_name(b) + (f"  [{b['native']}]" if b.get("native") else "")
        lines.append(f"  {b['size']:>14,} {b['kind']:>8} {'freed' if b['freed'] else 'live':>6}"
                     f"  {where}")
    return "\n".join(lines) + "\n"


def report_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="pymemtrace malloc report",
        description="Summarise a capture written by 'pymemtrace malloc': total and peak heap, "
                    "bytes and counts by Python function and line (and by native caller for "
                    "--native captures), leak candidates, the largest allocations.",
        epilog="example: pymemtrace malloc report app.cap --json",
    )
    p.add_argument("file", metavar="FILE", help="the capture")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--top", type=int, default=20, metavar="N",
                   help="rows per table in the text report (default 20)")
    a = p.parse_args(list(argv))
    if a.top < 1:
        raise UserError(f"--top must be at least 1, not {a.top}")
    if not os.path.exists(a.file):
        raise UserError(f"no such capture: {a.file}")
    try:
        r = load(a.file)
    except ValueError as err:
        raise UserError(f"cannot read {a.file}: {err}") from None
    if a.json:
        json.dump(r, sys.stdout, indent=1)
        sys.stdout.write("\n")
        for w in r["warnings"]:
            print(f"pymemtrace malloc report: warning: {w}", file=sys.stderr)
    else:
        sys.stdout.write(format_report(r, a.file, a.top))
    return 0
