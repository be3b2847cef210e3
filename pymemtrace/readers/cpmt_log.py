"""Read the logs that :mod:`pymemtrace.cPyMemTrace` writes.

A log is text a person can read; this module turns it back into records::

    from pymemtrace.readers import cpmt_log
    log = cpmt_log.read("20241107_195847_62264_P_1_PY3.11.7.log")
    for rec in log.largest(5):
        print(rec.d_rss, rec.function, rec.file, rec.line)

The layout (see the README's cPyMemTrace section) is: optional message lines,
a header row ``Event dEvent Clock What File #line Function RSS dRSS``, then one
row per logged event::

    NEXT: 5     +4      0.067777 RETURN   test.py #  10 create_string 11206656      1052672

``NEXT:`` rows are events whose RSS moved by at least the trigger since the
last logged row; the ``PREV:`` row before one is the event just before it (the
state before the change).  Any other line (messages written with
``profile_write_message_to_log``, the ``MSG:`` rows of ``write_message_to_log``,
the notes a nested profiler leaves when it detaches and resumes, the clean-end
line) is kept in order as a note.

The reader never fails on a damaged log: a last line cut short by a crash is
reported through :attr:`CpmtLog.truncated` and otherwise ignored, and lines
that do not parse are kept as notes.  Only a file that is not a cPyMemTrace log
at all (no header row) raises :class:`ValueError`.

:func:`read` streams the file line by line (the records it returns are the
memory it keeps).  :func:`summarise` gives what ``pymemtrace trace report``
prints without keeping any row: one pass in C (``pymemtrace._cpmtsum``,
src/core/cpmtsum.c) whose memory depends on the distinct names, not on the
number of rows; it equals ``read(path).summary(top)``.  Both read the fields as
ASCII: only " \t\n\v\f\r" separate fields and only 0-9 are digits.
"""
from __future__ import annotations

import dataclasses
import errno
import heapq
import os
import re
import typing

from pymemtrace.readers import textfile

__all__ = ["Record", "CpmtLog", "Change", "Summary", "read", "summarise", "parse_lines",
           "HEADER_FIELDS"]

#: The column names of the header row, in order.
HEADER_FIELDS = ("Event", "dEvent", "Clock", "What", "File", "#line", "Function", "RSS", "dRSS")

# One event row.  File names may contain spaces ("<frozen importlib._bootstrap>"),
# so File is everything up to the " #" that precedes the line number.
# Integers have at most 20 digits (64 bits): a longer run is damage, and the
# row is kept as a note rather than handed to int() (which refuses 4300+).
_ROW = re.compile(
    r"^(?P<kind>NEXT|PREV):\s+(?P<event>\d{1,20})\s+(?P<d_event>[+-]?\d{1,20})\s+"
    r"(?P<clock>\d{1,20}(?:\.\d{1,20})?)\s+(?P<what>[A-Z_]+)\s+(?P<file>.*?)\s*#\s*"
    r"(?P<line>-?\d{1,20})\s+(?P<function>\S+)\s+(?P<rss>-?\d{1,20})\s+(?P<d_rss>[+-]?\d{1,20})\s*$",
    re.ASCII,
)
_HEADER = re.compile(r"^\s*Event\s+dEvent\s+Clock\s+What\s+File\s+#line\s+Function\s+RSS\s+dRSS\s*$",
                     re.ASCII)
# The last line a context writes when it exits (src/core/cpmtlog.c), also when
# the block raised: "# END events=N clock=S rss=B rss_peak=B exit=ok|Name".
_CLEAN_END = re.compile(r"^# END events=\d+ ", re.ASCII)


@dataclasses.dataclass(frozen=True)
class Record:
    """One event row of a log."""

    kind: str          #: ``"NEXT"`` (crossed the trigger) or ``"PREV"`` (the event before one)
    event: int         #: event number, counted from the profiler's start
    d_event: int       #: events since the previous row
    clock: float       #: seconds since the profiler started
    what: str          #: CALL, RETURN, C_CALL, C_RETURN, C_EXCEPTION, EXCEPTION or LINE
    file: str          #: file name of the code that was running
    line: int          #: line number in that file
    function: str      #: function name (Python function or C function)
    rss: int           #: resident set size in bytes at this event
    d_rss: int         #: change of RSS since the previous logged row
    lineno: int = 0    #: line number of this row in the log file (1-based)


@dataclasses.dataclass
class CpmtLog:
    """A parsed log: its messages, event records and notes."""

    path: typing.Optional[str]
    messages: typing.List[str] = dataclasses.field(default_factory=list)
    records: typing.List[Record] = dataclasses.field(default_factory=list)
    #: every non-row line after the header, as (log line number, text)
    notes: typing.List[typing.Tuple[int, str]] = dataclasses.field(default_factory=list)
    #: True when the log ends with the profiler's clean-end line
    complete: bool = False
    #: True when the last line was cut short (the traced program died mid-write)
    truncated: bool = False

    @property
    def next_records(self) -> typing.List[Record]:
        """The ``NEXT:`` rows: events where RSS moved by at least the trigger."""
        return [r for r in self.records if r.kind == "NEXT"]

    def largest(self, n: int = 10, *, increases_only: bool = False) -> typing.List[Record]:
        """The *n* ``NEXT:`` rows with the largest ``|dRSS|`` (or largest rises).

        The first row of a log carries the whole RSS at start as its dRSS and
        is left out: it is not a change the traced code made.
        """
        rows = self.next_records[1:] if self.next_records and self.next_records[0].event == 0 \
            else self.next_records
        if increases_only:
            rows = [r for r in rows if r.d_rss > 0]
            rows.sort(key=lambda r: -r.d_rss)
        else:
            rows = sorted(rows, key=lambda r: -abs(r.d_rss))
        return rows[:max(0, n)]

    def by_function(self) -> typing.List[typing.Tuple[str, str, int, int]]:
        """Net dRSS summed by (function, file): list of (function, file, d_rss, rows),
        largest net increase first.  The start row is left out as in :meth:`largest`."""
        acc: typing.Dict[typing.Tuple[str, str], typing.List[int]] = {}
        rows = self.next_records
        if rows and rows[0].event == 0:
            rows = rows[1:]
        for r in rows:
            slot = acc.setdefault((r.function, r.file), [0, 0])
            slot[0] += r.d_rss
            slot[1] += 1
        out = [(fn, f, v[0], v[1]) for (fn, f), v in acc.items()]
        out.sort(key=lambda t: -t[2])
        return out

    def summary(self, top: int = 10) -> "Summary":
        """What ``pymemtrace trace report`` prints about this log (see :class:`Summary`)."""
        rows = self.next_records
        last = self.records[-1] if self.records else None
        return Summary(
            path=self.path, records=len(self.records), next_records=len(rows),
            first_rss=rows[0].rss if rows else None,
            last=(last.rss, last.event, last.clock) if last else None,
            truncated=self.truncated, complete=self.complete,
            largest=[Change(r.d_rss, r.event, r.what, r.function, r.file, r.line)
                     for r in self.largest(top)],
            by_function=[t for t in self.by_function() if t[2] != 0][:max(0, top)],
        )


class Change(typing.NamedTuple):
    """One of the largest changes of a log (a ``NEXT:`` row)."""

    d_rss: int
    event: int
    what: str
    function: str
    file: str
    line: int


@dataclasses.dataclass(frozen=True)
class Summary:
    """What ``pymemtrace trace report`` prints about a log."""

    path: typing.Optional[str]
    records: int                    #: rows (NEXT and PREV)
    next_records: int               #: NEXT rows
    first_rss: typing.Optional[int]     #: RSS of the first NEXT row (None: no NEXT row)
    #: (rss, event, clock) of the last row (None: no row)
    last: typing.Optional[typing.Tuple[int, int, float]]
    truncated: bool
    complete: bool
    #: :meth:`CpmtLog.largest` (top)
    largest: typing.List[Change]
    #: :meth:`CpmtLog.by_function` without the zero sums, at most top of them
    by_function: typing.List[typing.Tuple[str, str, int, int]]


def parse_row(text: str, lineno: int = 0,
              names: typing.Optional[typing.Dict[str, str]] = None) -> typing.Optional[Record]:
    """Parse one event row, or return None if *text* is not one.

    *names*, a dict kept across rows, makes rows share one copy of each
    kind, event kind, file and function name (a record is then about a fifth
    of the memory)."""
    m = _ROW.match(text)
    if m is None:
        return None
    kind, what, file, function = m.group("kind", "what", "file", "function")
    if names is not None:
        kind, what, file, function = (names.setdefault(kind, kind), names.setdefault(what, what),
                                      names.setdefault(file, file),
                                      names.setdefault(function, function))
    return Record(
        kind=kind, event=int(m["event"]), d_event=int(m["d_event"]),
        clock=float(m["clock"]), what=what, file=file, line=int(m["line"]),
        function=function, rss=int(m["rss"]), d_rss=int(m["d_rss"]), lineno=lineno,
    )


class _Parser:
    """Builds a :class:`CpmtLog` one line at a time (the last line is held
    back until the next one, or the end, says whether it was cut short).

    A line longer than :data:`textfile.MAX_LINE` bytes is never a header,
    row or end line: it is kept cut, as a message or note (so is it in C)."""

    def __init__(self, path: typing.Optional[str],
                 on_record: typing.Optional[typing.Callable[[Record], None]] = None) -> None:
        self.log = CpmtLog(path=path)
        self.add = on_record or self.log.records.append     # keep the records, or not
        self.names: typing.Dict[str, str] = {}
        self.seen_header = False
        self.lineno = 0
        self.last_end = 0       # line number of the last clean-end note

    def line(self, text: str, cut: bool = False, too_long: bool = False) -> None:
        self.lineno += 1
        log = self.log
        if not self.seen_header:
            if not too_long and _HEADER.match(text):
                self.seen_header = True
            else:
                log.messages.append(text)
            return
        if cut:                 # the last line, without its newline
            log.truncated = True
            return
        rec = None if too_long else parse_row(text, self.lineno, self.names)
        if rec is not None:
            self.add(rec)
        elif text.strip():
            log.notes.append((self.lineno, text))
            if not too_long and _CLEAN_END.match(text):
                self.last_end = self.lineno

    def finish(self, empty: bool) -> CpmtLog:
        log = self.log
        if not self.seen_header:
            why = "the file is empty" if empty else \
                f"no header row '{' '.join(HEADER_FIELDS)}'"
            raise ValueError(f"{log.path or 'text'}: not a cPyMemTrace log ({why})")
        log.complete = self.last_end == self.lineno
        return log


def _too_long(text: str) -> bool:
    return len(text) > textfile.MAX_LINE // 4 and \
        len(text.encode("utf-8", "surrogatepass")) > textfile.MAX_LINE


def parse_lines(lines: typing.Iterable[str], path: typing.Optional[str] = None,
                ends_with_newline: bool = True) -> CpmtLog:
    """Parse the lines of a log (without their newlines).

    *ends_with_newline* says whether the text ended with a newline; if it did
    not, the last line may have been cut short by a crash.
    """
    p = _Parser(path)
    pending = None
    for text in lines:
        if pending is not None:
            p.line(pending, too_long=_too_long(pending))
        pending = text
    if pending is not None:
        p.line(pending, cut=not ends_with_newline, too_long=_too_long(pending))
    return p.finish(empty=p.lineno == 0)


def _open_log(path: typing.Union[str, os.PathLike]) -> typing.BinaryIO:
    try:
        return textfile.open_regular(path)
    except textfile.NotALogFile:
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        raise ValueError(f"{os.fspath(path)}: not a cPyMemTrace log (not a regular file)")


def _lines(f: typing.BinaryIO) -> typing.Iterator[typing.Tuple[bytes, bool, bool]]:
    """(line without its newline, had a newline, longer than MAX_LINE) for each
    line of *f*; a long line is cut to MAX_LINE + 1 bytes, the rest dropped."""
    limit = textfile.MAX_LINE
    while True:
        raw = f.readline(limit + 1)
        if not raw:
            return
        if raw.endswith(b"\n"):
            yield raw[:-1], True, False
        elif len(raw) <= limit:
            yield raw, False, False          # the end of the file
        else:
            ended = False
            while not ended:                 # drop the rest of the line
                rest = f.readline(limit)
                if not rest:
                    break
                ended = rest.endswith(b"\n")
            yield raw, ended, True


def read(path: typing.Union[str, os.PathLike]) -> CpmtLog:
    """Read and parse the log at *path*, line by line.

    Raises :class:`OSError` if it cannot be read and :class:`ValueError` if it
    is not a cPyMemTrace log.
    """
    return _parse_file(path, _Parser(os.fspath(path)))


def _parse_file(path: typing.Union[str, os.PathLike], p: _Parser) -> CpmtLog:
    with _open_log(path) as f:
        pending = None
        for raw, ended, too_long in _lines(f):
            if pending is not None:
                p.line(pending[0], too_long=pending[1])
            pending = (raw.decode("utf-8", errors="replace"), too_long)
        if pending is not None:
            p.line(pending[0], cut=not ended, too_long=pending[1])
    return p.finish(empty=p.lineno == 0)


def summarise(path: typing.Union[str, os.PathLike], top: int = 10) -> Summary:
    """What ``pymemtrace trace report`` prints about the log at *path*, read once
    in C without keeping its rows; the same as ``read(path).summary(top)``.

    Raises :class:`OSError` if it cannot be read and :class:`ValueError` if it
    is not a cPyMemTrace log.
    """
    from pymemtrace import _cpmtsum

    d = _cpmtsum.summarise(path, top)
    name = os.fspath(path)
    if not d["regular"]:
        raise ValueError(f"{name}: not a cPyMemTrace log (not a regular file)")
    if not d["header"]:
        why = "the file is empty" if d["bytes"] == 0 else \
            f"no header row '{' '.join(HEADER_FIELDS)}'"
        raise ValueError(f"{name}: not a cPyMemTrace log ({why})")
    if d["overflow"]:           # a number past 64 bits: Python's integers have no limit
        return _summarise_in_python(path, top)
    last = d["last"]
    return Summary(
        path=name, records=d["records"], next_records=d["next_records"],
        first_rss=d["first_rss"],
        last=(last[0], last[1], float(last[2])) if last else None,
        truncated=d["truncated"], complete=d["complete"],
        largest=[Change(*t) for t in d["largest"]], by_function=d["by_function"],
    )


class _Summariser:
    """:meth:`CpmtLog.summary` computed as the records stream by, keeping none:
    what :func:`summarise` does in C, for logs whose numbers C cannot hold."""

    def __init__(self, top: int) -> None:
        self.top = max(0, top)
        self.records = self.next_records = self.order = 0
        self.first_rss: typing.Optional[int] = None
        self.last: typing.Optional[typing.Tuple[int, int, float]] = None
        # (|dRSS|, -order, change): the root is the change dropped first
        self.heap: typing.List[typing.Tuple[int, int, Change]] = []
        self.funcs: typing.Dict[typing.Tuple[str, str], typing.List[int]] = {}

    def __call__(self, r: Record) -> None:
        self.records += 1
        self.last = (r.rss, r.event, r.clock)
        if r.kind != "NEXT":
            return
        self.next_records += 1
        if self.next_records == 1:
            self.first_rss = r.rss
            if r.event == 0:        # the RSS at start, as in CpmtLog.largest
                return
        slot = self.funcs.setdefault((r.function, r.file), [0, 0])
        slot[0] += r.d_rss
        slot[1] += 1
        item = (abs(r.d_rss), -self.order, Change(r.d_rss, r.event, r.what, r.function,
                                                  r.file, r.line))
        self.order += 1
        if len(self.heap) < self.top:
            heapq.heappush(self.heap, item)
        elif self.heap and item[:2] > self.heap[0][:2]:
            heapq.heapreplace(self.heap, item)

    def summary(self, log: CpmtLog) -> Summary:
        funcs = [(fn, f, v[0], v[1]) for (fn, f), v in self.funcs.items() if v[0] != 0]
        funcs.sort(key=lambda t: -t[2])
        return Summary(
            path=log.path, records=self.records, next_records=self.next_records,
            first_rss=self.first_rss, last=self.last, truncated=log.truncated,
            complete=log.complete, largest=[c for _, _, c in sorted(self.heap, reverse=True)],
            by_function=funcs[:self.top],
        )


def _summarise_in_python(path: typing.Union[str, os.PathLike], top: int) -> Summary:
    acc = _Summariser(top)
    return acc.summary(_parse_file(path, _Parser(os.fspath(path), on_record=acc)))
