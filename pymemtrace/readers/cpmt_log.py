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
"""
from __future__ import annotations

import dataclasses
import os
import re
import stat
import typing

__all__ = ["Record", "CpmtLog", "read", "parse_lines", "HEADER_FIELDS"]

#: The column names of the header row, in order.
HEADER_FIELDS = ("Event", "dEvent", "Clock", "What", "File", "#line", "Function", "RSS", "dRSS")

# One event row.  File names may contain spaces ("<frozen importlib._bootstrap>"),
# so File is everything up to the " #" that precedes the line number.
# Integers have at most 20 digits (64 bits): a longer run is damage, and the
# row is kept as a note rather than handed to int() (which refuses 4300+).
_ROW = re.compile(
    r"^(?P<kind>NEXT|PREV):\s+(?P<event>\d{1,20})\s+(?P<d_event>[+-]?\d{1,20})\s+"
    r"(?P<clock>\d{1,20}(?:\.\d{1,20})?)\s+(?P<what>[A-Z_]+)\s+(?P<file>.*?)\s*#\s*"
    r"(?P<line>-?\d{1,20})\s+(?P<function>\S+)\s+(?P<rss>-?\d{1,20})\s+(?P<d_rss>[+-]?\d{1,20})\s*$"
)
_HEADER = re.compile(r"^\s*Event\s+dEvent\s+Clock\s+What\s+File\s+#line\s+Function\s+RSS\s+dRSS\s*$")
# The last line a context writes when it exits (src/core/cpmtlog.c), also when
# the block raised: "# END events=N clock=S rss=B rss_peak=B exit=ok|Name".
_CLEAN_END = re.compile(r"^# END events=\d+ ")


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


def parse_row(text: str, lineno: int = 0) -> typing.Optional[Record]:
    """Parse one event row, or return None if *text* is not one."""
    m = _ROW.match(text)
    if m is None:
        return None
    return Record(
        kind=m["kind"], event=int(m["event"]), d_event=int(m["d_event"]),
        clock=float(m["clock"]), what=m["what"], file=m["file"], line=int(m["line"]),
        function=m["function"], rss=int(m["rss"]), d_rss=int(m["d_rss"]), lineno=lineno,
    )


def parse_lines(lines: typing.Iterable[str], path: typing.Optional[str] = None,
                ends_with_newline: bool = True) -> CpmtLog:
    """Parse the lines of a log (without their newlines).

    *ends_with_newline* says whether the text ended with a newline; if it did
    not, the last line may have been cut short by a crash.
    """
    log = CpmtLog(path=path)
    seen_header = False
    lines = list(lines)
    for i, text in enumerate(lines, 1):
        last = i == len(lines)
        if not seen_header:
            if _HEADER.match(text):
                seen_header = True
            else:
                log.messages.append(text)
            continue
        rec = parse_row(text, i)
        if rec is not None and not (last and not ends_with_newline):
            log.records.append(rec)
            continue
        if last and not ends_with_newline:
            log.truncated = True
            continue
        if text.strip():
            log.notes.append((i, text))
    if not seen_header:
        raise ValueError(f"{path or 'text'}: not a cPyMemTrace log (no header row "
                         f"'{' '.join(HEADER_FIELDS)}')")
    if log.notes and log.notes[-1][0] == len(lines) and _CLEAN_END.match(log.notes[-1][1]):
        log.complete = True
    return log


def read(path: typing.Union[str, os.PathLike]) -> CpmtLog:
    """Read and parse the log at *path*.

    Raises :class:`OSError` if it cannot be read and :class:`ValueError` if it
    is not a cPyMemTrace log.
    """
    with open(path, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError(f"{os.fspath(path)}: not a cPyMemTrace log (not a regular file)")
        data = f.read()
    text = data.decode("utf-8", errors="replace")
    ends_with_newline = text.endswith("\n") or not text
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return parse_lines(lines, os.fspath(path), ends_with_newline)
