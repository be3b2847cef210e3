"""``pymemtrace malloc report|flamegraph|export``: what a capture shows.

``report`` prints one view of a capture (peak, leaks, all, time, summary) as
text or JSON; ``flamegraph`` writes one self-contained HTML file; ``export``
writes pprof or collapsed stacks for the tools people already run.  Every
number comes from the C aggregation (:mod:`pymemtrace.readers.malloc_stacks`);
the views are :mod:`pymemtrace.reporters`; this module parses arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from typing import Optional, Sequence

from pymemtrace.commands import UserError
from pymemtrace.readers.malloc_capture import capture_header, load
from pymemtrace.readers.malloc_stacks import load_stacks
from pymemtrace.reporters import malloc_views as mv
from pymemtrace.reporters.malloc_text import format_header, format_tables

_VIEW_HELP = """\
views:
  peak     (default) memory live at the high-water mark, by stack: what to
           shrink to lower the peak
  leaks    memory still live at the end of the capture (or of --range), by stack
  all      everything allocated, by stack, then by line, function and native caller
  time     the heap and the process's RSS over time (seconds) with the peak marked
  summary  allocation sizes and allocators (malloc, calloc, realloc, memalign, mmap)

Each stack view lists the biggest stacks (innermost frame first), then every
function inclusively (what it and everything it called holds) and by
allocating line.  Without --stacks at capture time a stack is one frame.

--range START:END limits the peak, leaks and all views to the events
[START, END): event numbers, percentages, or seconds since the capture
opened (2.5s:10s; the time view shows both);
'leaks' then means made in the range and still live at its end.

examples:
  pymemtrace malloc report app.cap                     # live at the peak
  pymemtrace malloc report app.cap --view leaks --top 5
  pymemtrace malloc report app.cap --view all --range 50%:
  pymemtrace malloc report app.cap --view leaks --range 2.5s:10s
  pymemtrace malloc report app.cap --view time
  pymemtrace malloc report app.cap --json > report.json
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="a capture written by 'pymemtrace malloc'")
    p.add_argument("--range", metavar="START:END", dest="range_spec",
                   help="only the events [START, END): event numbers, percentages or "
                        "seconds since the capture opened (10%%:60%%, 5000:, :50%%, 2.5s:10s)")
    p.add_argument("--thread", metavar="ID", type=int,
                   help="only allocations made by this thread (the summary view lists them); "
                        "the peak view is then at its own high-water mark")


def _parser_report() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pymemtrace malloc report",
        description="Summarise a capture written by 'pymemtrace malloc': one view of it as "
                    "text, or every view as one JSON object.",
        epilog=_VIEW_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--view", choices=mv.VIEWS, default="peak",
                   help="what to show (default: peak)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: the totals, by_python_site, leaks, ... and "
                        "'stacks' (frames written out) sorted for --view")
    p.add_argument("--top", type=int, default=20, metavar="N",
                   help="rows per table (default 20; stacks: N/2)")
    p.add_argument("--depth", type=int, default=8, metavar="N",
                   help="frames shown per stack in the text report (default 8)")
    p.add_argument("--native", action="store_true",
                   help="allocations by whole stack, every frame written out (native "
                        "frames symbolised, Python frames interleaved), most bytes first "
                        "(--native captures)")
    return p


def _read(path: str, range_spec: Optional[str], thread: Optional[int], points: int = 400,
          slices: int = 0):
    if not os.path.exists(path):
        raise UserError(f"no such capture: {path}")
    _no_events(path, "--range" if range_spec else None)
    try:
        cap = load(path)
        stacks = load_stacks(path, range_spec=range_spec, thread=thread, points=points,
                                slices=slices)
    except ValueError as err:
        if str(err).startswith("--range"):
            raise UserError(str(err)) from None
        raise UserError(f"cannot read {path}: {err}") from None
    if thread is not None and not any(t["id"] == thread for t in stacks["threads"]):
        known = ", ".join(str(t["id"]) for t in stacks["threads"] if t["id"]) or "none recorded"
        raise UserError(f"--thread {thread}: no such thread in {path} (threads: {known})")
    if stacks["impossible_events"]:
        cap["warnings"].append(f"{stacks['impossible_events']} events with impossible sizes "
                                  "(corrupt records) were skipped")
    return cap, stacks


def _no_events(path: str, what: Optional[str]) -> None:
    """Refuse, in one line, what an aggregated capture cannot answer (it has no events)."""
    if what is None:
        return
    h = capture_header(path)
    if h and h["aggregate"]:
        tail = "; the time view shows its heap at each checkpoint" if what == "--range" else ""
        raise UserError(f"{what}: {path} is an aggregated capture (--aggregate): it keeps "
                        f"totals per stack, not events, so it cannot answer this{tail}")


def main(command: str, argv: Sequence[str]) -> int:
    """`pymemtrace malloc report|flamegraph|export ARGS`."""
    return {"report": report_main, "flamegraph": flamegraph_main,
            "export": export_main}[command](argv)


def report_main(argv: Sequence[str]) -> int:
    a = _parser_report().parse_args(list(argv))
    if a.top < 1:
        raise UserError(f"--top must be at least 1, not {a.top}")
    if a.depth < 1:
        raise UserError(f"--depth must be at least 1, not {a.depth}")
    if a.native:
        return _report_stacks(a.file, a.top, a.json)
    cap, r = _read(a.file, a.range_spec, a.thread)
    if a.json:
        json.dump(mv.to_json(cap, r, a.view), sys.stdout, indent=1)
        sys.stdout.write("\n")
        for w in cap["warnings"]:
            print(f"pymemtrace malloc report: warning: {w}", file=sys.stderr)
        return 0
    out = [format_header(cap, a.file)]
    out.append(f"  view: {a.view} ({mv.scope(r)})\n")
    if a.view == "time":
        out.append(mv.format_time(r))
        if cap["aggregate"]:
            out.append(f"(An aggregated capture: one point per checkpoint, {len(r['points'])} "
                       "kept, each the highest heap since the one before.)\n")
    elif a.view == "summary":
        out.append(mv.format_summary(r, cap))
    else:
        out.append(mv.format_view(r, a.view, a.top, a.depth))
        if a.view == "all":
            out.append(format_tables(cap, a.top))
        elif a.view == "leaks" and cap.get("native_leaks"):
            out.append("\nLeak candidates by native caller:\n")
            out.extend(f"  {n['bytes']:>14,} {n['count']:>9,}  {n['module']}!{n['symbol']}\n"
                       for n in cap["native_leaks"][:a.top])
    sys.stdout.write("".join(out))
    return 0


def _bad_capture(path: str, err: ValueError) -> UserError:
    text = str(err)
    return UserError(text if text.startswith("--range") else f"cannot read {path}: {text}")


def _output(a: argparse.Namespace, suffix: str) -> str:
    out = a.output or os.path.splitext(a.file)[0] + suffix
    if os.path.isdir(out):
        raise UserError(f"-o {out} is a directory")
    return out


def _write(out: str, data) -> None:
    """Write `data` (str or bytes) to `out` whole, or not at all.

    A regular file (or a new one) is written beside it and renamed into place;
    anything else that exists (a pipe, /dev/stdout, a device) is written into
    as it is, never replaced by a regular file."""
    data = data.encode() if isinstance(data, str) else data
    try:
        st = os.stat(out)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        try:
            with open(out, "wb") as f:
                f.write(data)
        except OSError as err:
            raise UserError(f"cannot write {out}: {err.strerror}") from None
        return
    tmp = f"{out}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except OSError as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise UserError(f"cannot write {out}: {err.strerror}") from None


def flamegraph_main(argv: Sequence[str]) -> int:
    from pymemtrace.reporters import flamegraph

    p = argparse.ArgumentParser(
        prog="pymemtrace malloc flamegraph",
        description="Write a capture's flame graph as one self-contained HTML file (no network "
                    "needed to open it).  In the page: switch between peak (live at the "
                    "high-water mark), leaks (live at the end), all allocations and a time range "
                    "(sliders over the heap timeline); click a frame to zoom; search by regular "
                    "expression.",
        epilog="example: pymemtrace malloc flamegraph app.cap -o app.html && xdg-open app.html")
    _common(p)
    p.add_argument("-o", "--output", metavar="OUT.html",
                   help="where to write the page (default: FILE with .html)")
    a = p.parse_args(list(argv))
    if not os.path.exists(a.file):
        raise UserError(f"no such capture: {a.file}")
    _no_events(a.file, "--range" if a.range_spec else None)
    out = _output(a, ".html")
    try:
        html, r = flamegraph.render_capture(a.file, range_spec=a.range_spec, thread=a.thread)
    except ValueError as err:
        raise _bad_capture(a.file, err) from None
    _write(out, html)
    print(f"pymemtrace malloc flamegraph: {out} ({len(r['stacks']):,} stacks); open it in a "
          "browser", flush=True)
    return 0


def export_main(argv: Sequence[str]) -> int:
    from pymemtrace.reporters import malloc_export

    p = argparse.ArgumentParser(
        prog="pymemtrace malloc export",
        description="Write a capture for other tools: 'pprof' (gzipped profile.proto with "
                    "alloc_objects, alloc_space, inuse_objects, inuse_space: go tool pprof, "
                    "Pyroscope, Parca, Grafana) or 'collapsed' stacks (outer;...;inner BYTES: "
                    "flamegraph.pl, speedscope).",
        epilog="examples:\n"
               "  pymemtrace malloc export app.cap -o app.pb.gz && go tool pprof -top app.pb.gz\n"
               "  pymemtrace malloc export app.cap --format collapsed --view leaks -o leaks.txt",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--format", choices=("pprof", "collapsed"), default="pprof",
                   help="default: pprof")
    p.add_argument("--inuse", choices=("peak", "end"), default="peak",
                   help="pprof: what 'in use' means: live at the high-water mark (default) or "
                        "at the end (leaks)")
    p.add_argument("--view", choices=("peak", "leaks", "all"), default="peak",
                   help="collapsed: which bytes each stack carries (default: peak)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="where to write (default: FILE with .pb.gz or .collapsed; '-' for "
                        "standard output)")
    a = p.parse_args(list(argv))
    if not os.path.exists(a.file):
        raise UserError(f"no such capture: {a.file}")
    _no_events(a.file, "--range" if a.range_spec else None)
    try:
        if a.format == "pprof":
            start = load(a.file)["start_ns"]
            data = malloc_export.pprof_profile(a.file, range_spec=a.range_spec,
                                               thread=a.thread, inuse=a.inuse, time_ns=start)
        else:
            r = load_stacks(a.file, range_spec=a.range_spec, thread=a.thread, points=0)
            data = malloc_export.collapsed(r, a.view)
    except ValueError as err:
        raise _bad_capture(a.file, err) from None
    if a.output == "-":
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
        else:
            sys.stdout.write(data)
        return 0
    out = _output(a, ".pb.gz" if a.format == "pprof" else ".collapsed")
    _write(out, data)
    print(f"pymemtrace malloc export: {out} ({a.format})", flush=True)
    return 0


def _report_stacks(path: str, top: int, as_json: bool) -> int:
    from pymemtrace.readers.malloc_native import load_native_stacks
    from pymemtrace.reporters.malloc_native import format_stacks

    if not os.path.exists(path):
        raise UserError(f"no such capture: {path}")
    _no_events(path, "report --native")
    try:
        r = load_native_stacks(path, top)
    except ValueError as err:
        raise UserError(f"cannot read {path}: {err}") from None
    if as_json:
        json.dump(r, sys.stdout, indent=1)
        sys.stdout.write("\n")
        for w in r["warnings"]:
            print(f"pymemtrace malloc report: warning: {w}", file=sys.stderr)
    else:
        sys.stdout.write(format_stacks(r, path, top))
    return 0
