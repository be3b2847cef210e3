"""Watch a process and all its descendants: memory and CPU of each, as a tree.

The original pymemtrace's ``process_tree`` tool over C sampling: the
processes are found and sampled by :class:`pymemtrace._process.Tree`
(``src/core/proctree``, descriptors of ``/proc/PID/*`` kept open, no
psutil); this module only formats.  Every *interval* seconds it writes one
row per process, children indented under their parent, each value followed
by its change since the previous sample (red when it grew, green when it
shrank, on a terminal)::

    python -m pymemtrace.process_tree -p 1234 -a
    python -m pymemtrace.process_tree -i 0.5 -u -- make -j4

It stops when the watched process exits, after ``--count`` samples, or at
Ctrl-C.  ``--json PATH`` also writes every sample as the original did: a
JSON array of nested ``{"process_time", "pid", "name", columns...,
"children": [...]}`` objects (the array is closed however the tool stops).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, TextIO

from pymemtrace import _process

__all__ = ["ProcSample", "Column", "COLUMNS", "ProcessTree", "log_process_tree", "main"]

logger = logging.getLogger(__name__)


class ProcSample(NamedTuple):
    """One process at one moment (bytes, seconds; faults are minor + major)."""

    pid: int
    ppid: int
    state: str
    elapsed: float
    rss: int
    vms: int
    uss: int            # -1 unless asked for
    faults: int
    utime: float
    stime: float
    num_threads: int
    fds: int            # open descriptors, -1 unless asked for (or unreadable)
    ctx_switches: int   # context switches, -1 unless asked for (or unreadable)


_STATES = {"R": "running", "S": "sleeping", "D": "disk-sleep", "Z": "zombie", "T": "stopped",
           "t": "tracing-stop", "X": "dead", "I": "idle", "W": "paging", "P": "parked"}


@dataclasses.dataclass(frozen=True)
class Column:
    """A column: its name, units, value of a sample, and formats of the value
    and of its change (None: no change column)."""

    name: str
    units: str
    value: Callable[["ProcessTree", ProcSample], Any]
    fmt: str
    diff_fmt: Optional[str]

    @property
    def title(self) -> str:
        return f"{self.name}({self.units})" if self.units else self.name

    @property
    def width(self) -> int:
        return int("".join(c for c in self.fmt.split(".")[0] if c.isdigit()) or 0)


_MB = 1024 ** 2


def _known(v: int) -> float:
    return float(v) if v >= 0 else float("nan")


#: Every column, by the option that adds it ("" for those always shown).
COLUMNS: Dict[str, Column] = {
    "rss": Column("RSS", "MB", lambda t, s: s.rss / _MB, "8,.1f", "+8,.1f"),
    "uss": Column("USS", "MB", lambda t, s: s.uss / _MB if s.uss >= 0 else float("nan"), "8,.1f", "+8,.1f"),
    "page_faults": Column("PFaults", "", lambda t, s: s.faults, "12,d", "+12,d"),
    "cpu": Column("CPU", "%", lambda t, s: t.cpu_percent(s), "8.1f", "+8.1f"),
    "user": Column("User", "s", lambda t, s: s.utime, "8,.3f", None),
    "sys": Column("Sys", "s", lambda t, s: s.stime, "8,.3f", None),
    "threads": Column("Thrds", "", lambda t, s: s.num_threads, "6,d", "+6,d"),
    "open_files": Column("Files", "", lambda t, s: _known(s.fds), "6,.0f", "+6,.0f"),
    "context_switches": Column("Ctx", "", lambda t, s: _known(s.ctx_switches), "10,.0f", "+10,.0f"),
    "status": Column("Status", "", lambda t, s: _STATES.get(s.state, s.state), ">12s", ">12s"),
    "cmdline": Column("CmdLine", "", lambda t, s: t.cmdline(s.pid), "s", None),
}


def _read_proc_text(pid: int, name: str) -> str:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read(4096).decode("utf-8", "replace")
    except OSError:
        return ""


class ProcessTree:
    """A process and its living descendants, sampled on each :meth:`sample`.

    ``ProcessTree(pid, uss=False, fds=False, ctx=False)`` raises ValueError
    when there is no such process and PermissionError when it may not be
    read.  *uss*, *fds* and *ctx* ask for the USS, the count of open
    descriptors and of context switches (-1 where they may not be read).
    """

    def __init__(self, pid: int, uss: bool = False, fds: bool = False, ctx: bool = False) -> None:
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise TypeError(f"pid must be an int, not {type(pid).__name__}")
        try:
            self._tree = _process.Tree(pid, uss=bool(uss), fds=bool(fds), ctx=bool(ctx))
        except ProcessLookupError:
            raise ValueError(f"no process with pid {pid}") from None
        self.pid = pid
        self._names: Dict[int, str] = {}
        self._cmdlines: Dict[int, str] = {}
        self._cpu_prev: Dict[int, tuple] = {}
        self._cpu: Dict[int, float] = {}

    def sample(self) -> List[ProcSample]:
        """One sample of each process, the root first; [] once the root has exited."""
        try:
            rows = [ProcSample(*r) for r in self._tree.sample()]
        except ProcessLookupError:
            return []
        now = time.monotonic()
        alive = {r.pid for r in rows}
        for cache in (self._names, self._cmdlines, self._cpu_prev, self._cpu):
            for gone in [p for p in cache if p not in alive]:
                del cache[gone]
        for r in rows:
            busy = r.utime + r.stime
            prev = self._cpu_prev.get(r.pid)
            self._cpu[r.pid] = 100.0 * (busy - prev[1]) / (now - prev[0]) if prev and now > prev[0] else 0.0
            self._cpu_prev[r.pid] = (now, busy)
        return rows

    def cpu_percent(self, s: ProcSample) -> float:
        """CPU use of the process since its previous sample (0.0 at its first)."""
        return self._cpu.get(s.pid, 0.0)

    def name(self, pid: int) -> str:
        if pid not in self._names:
            self._names[pid] = _read_proc_text(pid, "comm").strip() or "?"
        return self._names[pid]

    def cmdline(self, pid: int) -> str:
        if pid not in self._cmdlines:
            self._cmdlines[pid] = " ".join(_read_proc_text(pid, "cmdline").rstrip("\0").split("\0"))
        return self._cmdlines[pid]

    def close(self) -> None:
        self._tree.close()


def tree_order(rows: List[ProcSample]) -> Iterator[tuple]:
    """(depth, sample) of *rows* depth first from the root, children by pid."""
    if not rows:
        return
    kids: Dict[int, List[ProcSample]] = {}
    for r in rows[1:]:
        kids.setdefault(r.ppid, []).append(r)
    stack = [(0, rows[0])]
    while stack:
        depth, r = stack.pop()
        yield depth, r
        stack.extend((depth + 1, c) for c in sorted(kids.get(r.pid, []), key=lambda c: -c.pid))


class _Writer:
    """Writes the rows of samples as a table (or separated values) with changes."""

    def __init__(self, tree: ProcessTree, columns: List[Column], sep: str, ostream: TextIO,
                 colour: bool) -> None:
        self.tree, self.columns, self.sep, self.out, self.colour = tree, columns, sep, ostream, colour
        self.prev: Dict[tuple, Any] = {}

    def header(self) -> None:
        if self.sep:
            cells = ["Time(s)", "PID", "Name"]
            for c in self.columns:
                cells.append(c.title)
                if c.diff_fmt:
                    cells.append("d" + c.title)
            self.out.write(self.sep.join(cells) + "\n")
            return
        line = f"{'Time(s)':8s}  {'PID':>7s} {'Name':24s}"
        for c in self.columns:
            line += f" {c.title:>{c.width}s}" if c.width else f" {c.title}"
            if c.diff_fmt:
                line += f" {'d' + c.title:>{c.width}s}"
        self.out.write(line + "\n")

    def _paint(self, text: str, delta: Any) -> str:
        if not self.colour:
            return text
        grew = delta > 0 if not isinstance(delta, str) else bool(delta)
        shrank = not isinstance(delta, str) and delta < 0
        if grew:
            return f"\x1b[31m{text}\x1b[0m"
        return f"\x1b[32m{text}\x1b[0m" if shrank or isinstance(delta, str) else text

    def rows(self, t: float, rows: List[ProcSample], remember_only: bool = False) -> None:
        for depth, r in tree_order(rows):
            cells = []
            for c in self.columns:
                v = c.value(self.tree, r)
                key = (r.pid, c.name)
                if c.diff_fmt:
                    if isinstance(v, str):
                        d: Any = v if key in self.prev and v != self.prev[key] else ""
                    else:
                        d = v - self.prev.get(key, v)
                        d = 0 if d != d else d          # NaN (USS unavailable)
                    self.prev[key] = v
                    cells.append((format(v, c.fmt), self._paint(format(d, c.diff_fmt), d)))
                else:
                    cells.append((format(v, c.fmt), None))
            if remember_only:
                continue
            name = self.tree.name(r.pid)
            if self.sep:
                parts = [f"{t:.3f}", str(r.pid), name]
                for v, d in cells:
                    parts.append(v.strip())
                    if d is not None:
                        parts.append(d.strip())
                self.out.write(self.sep.join(parts) + "\n")
            else:
                line = f"{t:8.1f}  {r.pid:7d} {('  ' * depth + name)[:24]:24s}"
                for v, d in cells:
                    line += " " + v + ("" if d is None else " " + d)
                self.out.write(line + "\n")
        self.out.flush()


def _as_json(tree: ProcessTree, rows: List[ProcSample], columns: List[Column]) -> dict:
    nodes: Dict[int, dict] = {}
    for depth, r in tree_order(rows):
        node = {"process_time": r.elapsed, "pid": r.pid, "name": tree.name(r.pid)}
        for c in columns:
            v = c.value(tree, r)
            node[c.name] = None if isinstance(v, float) and v != v else v
        node["children"] = []
        nodes[r.pid] = node
        if depth:
            nodes[r.ppid]["children"].append(node)
    return nodes[rows[0].pid]


def log_process_tree(pid: int, interval: float = 1.0, columns: Optional[List[Column]] = None, *,
                     sep: str = "", ostream: TextIO = sys.stdout, omit_first: bool = False,
                     json_path: Optional[str] = None, count: Optional[int] = None,
                     uss: bool = False, colour: Optional[bool] = None,
                     until: Optional[Callable[[], bool]] = None) -> int:
    """Write the tree of *pid* to *ostream* every *interval* seconds.

    Stops when the process exits, after *count* samples, when *until()* is
    true, or at Ctrl-C.  Returns the number of samples written.
    """
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval <= 86400:
        raise ValueError(f"interval must be > 0 and at most 86400 seconds, not {interval!r}")
    columns = list(columns) if columns is not None else [COLUMNS["rss"], COLUMNS["cpu"]]
    tree = ProcessTree(pid, uss=uss or COLUMNS["uss"] in columns, fds=COLUMNS["open_files"] in columns,
                       ctx=COLUMNS["context_switches"] in columns)
    colour = ostream.isatty() and not os.environ.get("NO_COLOR") if colour is None else colour
    writer = _Writer(tree, columns, sep, ostream, bool(colour))
    jf = None
    written = 0
    try:
        if json_path:
            jf = open(json_path, "w", encoding="utf-8")
            jf.write("[\n")
        writer.header()
        start = time.monotonic()
        first = True
        while count is None or written < count:
            tick = time.monotonic()
            rows = tree.sample()
            if not rows:
                ostream.write(f"Process {pid} is not running.\n")
                break
            writer.rows(tick - start, rows, remember_only=first and omit_first)
            if not (first and omit_first):
                if jf is not None:
                    jf.write((",\n" if written else "") + json.dumps(_as_json(tree, rows, columns), indent=2))
                    jf.flush()
                written += 1
            first = False
            if until is not None and until():
                break
            if count is not None and written >= count:
                break
            time.sleep(max(0.0, interval - (time.monotonic() - tick)))
    except KeyboardInterrupt:
        ostream.write("Interrupted.\n")
    finally:
        tree.close()
        if jf is not None:
            jf.write("\n]\n")
            jf.close()
    return written


_NOT_PROVIDED = {"net_connections": "-n/--net-connections"}


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m pymemtrace.process_tree``."""
    p = argparse.ArgumentParser(
        prog="python -m pymemtrace.process_tree",
        description="Show the memory and CPU use of a process and each of its descendants, as a "
                    "tree, every INTERVAL seconds, until it exits (or Ctrl-C).",
        epilog="example: python -m pymemtrace.process_tree -p 1234 -a   "
               "|   python -m pymemtrace.process_tree -u -- make -j4")
    p.add_argument("-i", "--interval", type=float, default=1.0, help="seconds between samples [default: 1.0]")
    p.add_argument("-p", "--pid", type=int, default=-1, help="the process to watch, -1 for this one [default: -1]")
    p.add_argument("-l", "--log_level", type=int, dest="log_level", default=logging.INFO,
                   help="log level (debug=10, info=20, ...) [default: 20]")
    p.add_argument("--sep", default="", help="separate fields with SEP (e.g. '|') instead of a table")
    p.add_argument("-1", "--omit-first", action="store_true", help="do not write the first sample "
                   "(its changes are all zero)")
    p.add_argument("-u", "--uss", action="store_true",
                   help="USS: the memory the process alone holds, freed if it ended now (reads smaps_rollup)")
    p.add_argument("-g", "--page-faults", action="store_true", help="page faults (minor + major)")
    p.add_argument("-c", "--cpu-times", action="store_true", help="user and system CPU seconds")
    p.add_argument("-t", "--threads", action="store_true", help="number of threads")
    p.add_argument("-s", "--status", action="store_true", help="process state (running, sleeping, ...)")
    p.add_argument("--cmdline", action="store_true", help="each process's command line")
    p.add_argument("-x", "--context-switches", action="store_true", help="context switches (voluntary + not)")
    p.add_argument("-f", "--open-files", action="store_true", help="number of open file descriptors")
    p.add_argument("-a", "--all", action="store_true", help="the usual set: -cfgst")
    p.add_argument("-n", "--net-connections", action="store_true", help="not provided (see the README)")
    p.add_argument("--json", default="", metavar="PATH", help="also write every sample to PATH as JSON")
    p.add_argument("--count", type=int, default=None, help="stop after COUNT samples")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS...",
                   help="launch COMMAND and watch it (instead of -p)")
    a = p.parse_args(argv)
    for opt, flag in _NOT_PROVIDED.items():
        if getattr(a, opt):
            p.error(f"{flag} is not provided by this pymemtrace (columns available: -u -g -c -x -t -s -f "
                    "--cmdline)")
    if not 0 < a.interval <= 86400:
        p.error(f"--interval must be > 0 and at most 86400 seconds, not {a.interval}")
    if a.count is not None and a.count < 1:
        p.error(f"--count must be at least 1, not {a.count}")
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if command and a.pid != -1:
        p.error("give either -p PID or a command after --, not both")
    logging.basicConfig(level=a.log_level, format="%(asctime)s - %(levelname)-8s - %(message)s")
    cols = [COLUMNS["rss"]]
    if a.uss:
        cols.append(COLUMNS["uss"])
    if a.page_faults or a.all:
        cols.append(COLUMNS["page_faults"])
    cols.append(COLUMNS["cpu"])
    if a.cpu_times or a.all:
        cols += [COLUMNS["user"], COLUMNS["sys"]]
    if a.context_switches:
        cols.append(COLUMNS["context_switches"])
    if a.threads or a.all:
        cols.append(COLUMNS["threads"])
    if a.status or a.all:
        cols.append(COLUMNS["status"])
    if a.open_files or a.all:
        cols.append(COLUMNS["open_files"])
    if a.cmdline:
        cols.append(COLUMNS["cmdline"])
    popen = None
    if command:
        try:
            popen = subprocess.Popen(command)
        except OSError as err:
            print(f"{p.prog}: error: cannot run {command[0]}: {err.strerror}", file=sys.stderr)
            return 127 if isinstance(err, FileNotFoundError) else 126
        pid = popen.pid
    else:
        pid = os.getpid() if a.pid in (-1, 0) else a.pid
    try:
        print(f"CMD: {_read_proc_text(pid, 'cmdline').rstrip(chr(0)).replace(chr(0), ' ')}")
        log_process_tree(pid, a.interval, cols, sep=a.sep, omit_first=a.omit_first, json_path=a.json or None,
                         count=a.count, until=(lambda: popen.poll() is not None) if popen else None)
    except (ValueError, PermissionError) as err:
        print(f"{p.prog}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"{p.prog}: error: {a.json}: {err.strerror}", file=sys.stderr)
        return 1
    finally:
        if popen is not None:
            try:
                popen.wait()
            except KeyboardInterrupt:
                popen.kill()
                popen.wait()
    if popen is not None:
        return popen.returncode if popen.returncode >= 0 else 128 - popen.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
