"""Read the output of the scripts in ``scripts/bpftrace``.

The scripts (see ``pymemtrace bpftrace list``) print two kinds of lines:

* per-event lines while the program runs (``py_flowinfo``,
  ``py_flowinfo_rss``, ``py_flow_malloc_free``), for example::

     12345  12345         16     3 call         -> f (/tmp/w.py:1)

* when tracing stops, aggregated maps between two marker lines::

    === pymemtrace py_malloc begin ===
    @alloc[/tmp/w.py, f, 1, 2]: count 13, average 123458, total 1604954
    === pymemtrace py_malloc end ===

  Each map line's key is ``FILE, FUNCTION, FIRSTLINE, LINE`` (FIRSTLINE is
  the line of the function's ``def``, LINE the line that was running) and
  its value is bpftrace's ``stats()``: a count, an average and a total in
  bytes.  The file name comes first so that a name containing ", " still
  parses: the other three fields are split off from the right.

:func:`parse` turns that text into a :class:`Report`; :meth:`Report.by_function`
and friends aggregate it, sorted by bytes.  Output cut short (the traced
program or bpftrace was killed, the disk filled) is reported as incomplete
rather than rejected; an incomplete last line is ignored, never misread.
"""
from __future__ import annotations

import dataclasses
import io
import re
from typing import Dict, Iterable, List, Optional, Tuple

from pymemtrace.readers.textfile import MAX_LINE, NotALogFile, bounded_lines, open_regular

__all__ = ["ReportError", "Site", "Report", "parse", "parse_lines", "parse_file", "NO_FRAME"]

#: The function name used for allocations made while no Python frame ran.
NO_FRAME = "(no Python frame)"

_MARKER = re.compile(r"^=== pymemtrace (?P<script>[A-Za-z0-9_]+) (?P<what>begin|end) ===$")
_STATS = re.compile(r"^@(?P<map>[A-Za-z_][A-Za-z0-9_]*)\[(?P<key>.*)\]: "
                    r"count (?P<count>\d{1,20}), average (?P<avg>-?\d{1,20}), total (?P<total>-?\d{1,20})$")
# Numbers have at most 20 digits (64 bits): a longer run is damage, and its
# line does not match rather than reaching int() (which refuses 4300+ digits).
# PID TID DELTA DEPTH [RSS dRSS] call <indent>-> FUNCTION (FILE:LINE)
_CALL = re.compile(r"^\s*\d+(?:\s+[-+]?\d+){3,5}\s+call\s+-> (?P<func>\S+) "
                   r"\((?P<file>.*):(?P<line>-?\d{1,20})\)$")
_EVENT = re.compile(r"^\s*\d+(?:\s+[-+]?\d+){3,5}\s+[a-z]+\s")
_COUNT = re.compile(r"^@(?P<map>[A-Za-z_][A-Za-z0-9_]*)\[(?P<key>.*)\]: (?P<count>\d{1,20})$")
# py_flowinfo_rss: PID TID DELTA DEPTH RSS dRSS TYPE ...
_RSS_EVENT = re.compile(r"^\s*\d+\s+(?P<tid>\d+)\s+\d+\s+\d+\s+"
                        r"(?P<rss>-?\d{1,20})\s+(?P<drss>-?\d{1,20})\s+"
                        r"(?P<type>call|return|gc|gcdone)\s")
_LOST = re.compile(r"^Lost (\d{1,20}) events$")

# Which map is the headline of each script's report, and what it measures.
_PRIMARY = (
    ("alloc", "bytes allocated (malloc, calloc, realloc)"),
    ("object", "bytes allocated by the object allocator"),
    ("rss", "RSS growth in bytes"),
)



def _site_rows(acc: Dict[Tuple[str, str, int], List[int]]) -> List[dict]:
    """[{function, file, line, bytes, count}] from acc, largest bytes (then count) first."""
    rows = [{"function": f, "file": fi, "line": ln, "bytes": b, "count": c}
            for (fi, f, ln), (b, c) in acc.items()]
    rows.sort(key=lambda r: (-r["bytes"], -r["count"], r["file"], r["function"], r["line"]))
    return rows

class ReportError(ValueError):
    """The text is not output of a pymemtrace bpftrace script."""


@dataclasses.dataclass(frozen=True)
class Site:
    """What one map line says: a place in Python code and what happened there."""

    map: str
    file: str
    function: str
    first_line: int
    line: int
    count: int
    bytes: int


@dataclasses.dataclass
class Report:
    """Everything parsed from one output file."""

    script: Optional[str] = None
    complete: bool = False
    sites: List[Site] = dataclasses.field(default_factory=list)
    calls: Dict[Tuple[str, str, int], int] = dataclasses.field(default_factory=dict)
    events: int = 0
    lost_events: int = 0
    warnings: List[str] = dataclasses.field(default_factory=list)

    # ---- what the report is about -------------------------------------------------------

    def maps(self) -> List[str]:
        """The names of the maps found, in order of first appearance."""
        seen: Dict[str, None] = {}
        for s in self.sites:
            seen.setdefault(s.map, None)
        return list(seen)

    def primary(self) -> Tuple[Optional[str], str]:
        """(map name, description) of the headline measure; (None, 'calls') for flows."""
        names = self.maps()
        for name, what in _PRIMARY:
            if name in names:
                return name, what
        if names:
            return names[0], f"@{names[0]} total"
        return None, "calls"

    # ---- aggregation ---------------------------------------------------------------------

    def _sites(self, map_name: Optional[str]) -> Iterable[Site]:
        return (s for s in self.sites if s.map == map_name)

    def by_function(self, map_name: Optional[str] = None) -> List[dict]:
        """[{function, file, line, bytes, count}] sorted by bytes, then count.

        ``line`` is the line of the function's ``def`` (0 for module code and
        for allocations with no Python frame).  Without allocation maps (a
        pure call flow) ``count`` is the number of calls and ``bytes`` is 0.
        """
        if map_name is None:
            map_name = self.primary()[0]
        acc: Dict[Tuple[str, str, int], List[int]] = {}
        if map_name is None:
            for key, n in self.calls.items():
                acc[key] = [0, n]
        else:
            self._sum_sites(map_name, acc, lambda s: s.first_line)
        return _site_rows(acc)

    def by_file(self, map_name: Optional[str] = None) -> List[dict]:
        """[{file, bytes, count}] sorted by bytes, then count."""
        acc: Dict[str, List[int]] = {}
        for r in self.by_function(map_name):
            a = acc.setdefault(r["file"], [0, 0])
            a[0] += r["bytes"]
            a[1] += r["count"]
        rows = [{"file": f, "bytes": b, "count": c} for f, (b, c) in acc.items()]
        rows.sort(key=lambda r: (-r["bytes"], -r["count"], r["file"]))
        return rows

    def by_line(self, map_name: Optional[str] = None) -> List[dict]:
        """[{function, file, line, bytes, count}] per line that was running, by bytes."""
        if map_name is None:
            map_name = self.primary()[0]
        acc: Dict[Tuple[str, str, int], List[int]] = {}
        self._sum_sites(map_name, acc, lambda s: s.line)
        return _site_rows(acc)

    def _sum_sites(self, map_name: str, acc: Dict[Tuple[str, str, int], List[int]],
                   line_of) -> None:
        """Add the map's sites into acc[(file, function, line_of(site))] = [bytes, count]."""
        for s in self._sites(map_name):
            a = acc.setdefault((s.file, s.function, line_of(s)), [0, 0])
            a[0] += s.bytes
            a[1] += s.count

    def totals(self, map_name: Optional[str] = None) -> Tuple[int, int]:
        """(bytes, count) summed over the headline map (or the call counts)."""
        rows = self.by_function(map_name)
        return sum(r["bytes"] for r in rows), sum(r["count"] for r in rows)

    def to_json(self) -> dict:
        """A JSON-ready dict: the headline measure by function, by file and by line."""
        name, what = self.primary()
        total_bytes, total_count = self.totals()
        out = {
            "script": self.script,
            "complete": self.complete,
            "measure": what,
            "total_bytes": total_bytes,
            "total_count": total_count,
            "by_function": self.by_function(),
            "by_file": self.by_file(),
            "by_line": self.by_line() if name else [],
            "events": self.events,
            "lost_events": self.lost_events,
            "warnings": list(self.warnings),
        }
        others = {m: self.by_function(m) for m in self.maps() if m != name}
        if others:
            out["other_maps"] = others
        return out


def _split_key(key: str) -> Optional[Tuple[str, str, int, int]]:
    parts = key.rsplit(", ", 3)
    if len(parts) != 4:
        return None
    file, func, first, line = parts
    try:
        return file, func, int(first), int(line)
    except ValueError:
        return None


def _map_line(line: str) -> Optional[Site]:
    """A Site from one ``@map[FILE, FUNCTION, FIRSTLINE, LINE]: ...`` line, else None."""
    total = None
    m = _STATS.match(line)
    if m is None:
        m = _COUNT.match(line)
    else:
        total = int(m.group("total"))
    if m is None:
        return None
    key = _split_key(m.group("key"))
    if key is None:
        return None
    file, func, first, ln = key
    if not file and not func:
        file, func = "", NO_FRAME
    return Site(m.group("map"), file, func, first, ln, int(m.group("count")), total or 0)


def parse(text: str) -> Report:
    """Parse the text a script printed.

    Raises :class:`ReportError` when the text holds neither marker lines nor
    call-flow lines of a pymemtrace script.
    """
    return parse_lines(io.StringIO(text, newline="\n"))


def _whole_lines(lines: Iterable[str], rep: Report) -> Iterable[str]:
    """The lines that end with a newline, without it.  A last line without
    one may be cut anywhere, even inside a number, so it is not trusted."""
    too_long = 0
    for line in lines:
        if len(line) > MAX_LINE + line.endswith("\n"):
            too_long += 1               # bounded_lines cut it: malformed, whether or not it ended
        elif line.endswith("\n"):
            yield line[:-1]
        elif line:
            rep.warnings.append("the last line is incomplete (output cut short); it was ignored")
    if too_long:
        rep.warnings.append(f"{too_long} line(s) longer than {MAX_LINE} bytes were ignored")


def parse_lines(lines: Iterable[str]) -> Report:
    """Parse the output line by line (each line with its newline, as a file
    yields them), so that outputs of any size are read in constant memory."""
    rep = Report()
    in_maps = False
    began = False
    bad_map_lines = 0
    auto_sites: List[Site] = []     # map lines outside the markers: bpftrace's own print at exit
    # RSS growth by the function running when it happened (py_flowinfo_rss).
    stacks: Dict[str, List[Tuple[str, str, int]]] = {}
    growth: Dict[Tuple[str, str, int], List[int]] = {}
    for raw in _whole_lines(lines, rep):
        line = raw.rstrip("\r")
        m = _MARKER.match(line)
        if m:
            if rep.script is None:
                rep.script = m.group("script")
            if m.group("what") == "begin":
                in_maps = began = True
            else:
                in_maps = False
                if began:
                    rep.complete = True
            continue
        if line.startswith("@"):
            site = _map_line(line)
            if site is None:
                bad_map_lines += in_maps
            elif in_maps:
                rep.sites.append(site)
            else:
                auto_sites.append(site)
            continue
        if in_maps:
            continue
        r = _RSS_EVENT.match(line)
        if r:
            stack = stacks.setdefault(r.group("tid"), [])
            drss = int(r.group("drss"))
            if drss > 0:
                where = stack[-1] if stack else ("", NO_FRAME, 0)
                acc = growth.setdefault(where, [0, 0])
                acc[0] += drss
                acc[1] += 1
        m = _CALL.match(line)
        if m:
            rep.events += 1
            key = (m.group("file"), m.group("func"), int(m.group("line")))
            rep.calls[key] = rep.calls.get(key, 0) + 1
            if r:
                stack.append(key)
            continue
        if r and r.group("type") == "return" and stack:
            stack.pop()
        m = _LOST.match(line.strip())
        if m:
            rep.lost_events += int(m.group(1))
            continue
        if _EVENT.match(line):
            rep.events += 1
        m = re.match(r"^pymemtrace (?P<script>[A-Za-z0-9_]+): tracing PID", line)
        if m and rep.script is None:
            rep.script = m.group("script")
    for (file, func, first), (nbytes, n) in growth.items():
        rep.sites.append(Site("rss", file, func, first, first, n, nbytes))
    if auto_sites and not began:
        # bpftrace exited without running END (it then prints every map
        # itself): the aggregates are whole, only the markers are missing.
        rep.sites.extend(auto_sites)
        rep.complete = True
        rep.warnings.append("no end markers (bpftrace ended without running END); the maps "
                            "it printed at exit were used")
    if not began and not rep.calls and not rep.sites and rep.script is not None:
        raise ReportError(f"{rep.script} started but its maps were never printed: bpftrace "
                          "was killed (it prints them when the traced process exits, on "
                          "Ctrl-C or SIGTERM, never after SIGKILL)")
    if not began and not rep.calls and not rep.sites:
        raise ReportError("no output of a pymemtrace bpftrace script found (expected lines "
                          "'=== pymemtrace NAME begin ===' ... 'end ===' or call-flow lines)")
    if began and not rep.complete:
        rep.warnings.append("the output is truncated (no end marker): the report covers only "
                            "what was written before it stopped")
    elif not began and not rep.sites:
        rep.warnings.append("no aggregated maps (tracing did not end normally): "
                            "the report counts the calls in the flow lines")
    if bad_map_lines:
        rep.warnings.append(f"{bad_map_lines} map line(s) could not be parsed and were ignored")
    if rep.lost_events:
        rep.warnings.append(f"bpftrace lost {rep.lost_events} events (its buffers were full)")
    return rep


def parse_file(path: str) -> Report:
    """Read and parse one output file; errors name the file.  Only a regular
    file is read; lines longer than textfile.MAX_LINE are cut (and then do
    not parse)."""
    try:
        with open_regular(path) as f:
            head = f.read(4096)
            if not head:
                raise ReportError(f"{path} is empty")
            if b"\0" in head:
                raise ReportError(f"{path} is not text output of a pymemtrace bpftrace script")
            f.seek(0)
            try:
                return parse_lines(bounded_lines(f))
            except ReportError as err:
                raise ReportError(f"{path}: {err}") from None
    except NotALogFile as err:
        raise ReportError(f"{err}: not output of a pymemtrace bpftrace script") from None
    except OSError as err:
        raise ReportError(f"cannot read {path}: {err.strerror or err}") from None
