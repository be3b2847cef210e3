"""Read the logs that :mod:`pymemtrace.process` writes.

Two forms are read, mixed freely in one file:

* the seed's: records inside ordinary application log lines, anywhere in the
  line after ``ProcessLoggingThread-JSON``, ``-START`` or ``-STOP``;
* JSON lines, as ``pymemtrace process`` and ``log_process(output=...)``
  write them (an ``"event"`` key marks the first and last record).

Lines that are neither (other log messages, garbage) are skipped and
counted; a truncated last line (the traced program died mid-write) is
skipped and reported.  Nothing here needs more than the standard library,
except :func:`plot_matplotlib`, which needs matplotlib.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
from typing import Iterable, List, Optional, Tuple

from pymemtrace.readers.textfile import MAX_LINE, NotALogFile, bounded_lines, open_regular

__all__ = ["Record", "ProcessLog", "NotALogFile", "read_log", "parse_lines", "finite_number"]

_SEED_RE = re.compile(r"ProcessLoggingThread-JSON(-START|-STOP)? (\{.*)$")


def finite_number(v: object) -> Optional[float]:
    """v if it is a finite number (not a bool), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


@dataclasses.dataclass
class Record:
    """One sample (or a STOP note without data) from a process log."""

    kind: str                   # "START", "SAMPLE" or "STOP"
    time: float                 # seconds since the epoch (from "timestamp")
    pid: int
    data: dict                  # the whole JSON object
    line: int                   # 1-based line number in the log

    @property
    def has_memory(self) -> bool:
        return isinstance(self.data.get("memory_info"), dict)

    def mem(self, key: str, default: float = float("nan")) -> float:
        mi = self.data.get("memory_info")
        v = mi.get(key, default) if isinstance(mi, dict) else default
        return finite_number(v) if finite_number(v) is not None else default

    def cpu(self, key: str) -> float:
        ct = self.data.get("cpu_times")
        v = ct.get(key) if isinstance(ct, dict) else None
        n = finite_number(v)
        return n if n is not None else float("nan")

    @property
    def label(self) -> Optional[str]:
        lab = self.data.get("label")
        return lab if isinstance(lab, str) else None


@dataclasses.dataclass
class ProcessLog:
    """What :func:`read_log` found."""

    records: List[Record]
    skipped: int = 0                        # lines that were not records
    bad: List[Tuple[int, str]] = dataclasses.field(default_factory=list)  # (line, why), records that were malformed
    truncated: bool = False                 # the last line was cut short

    @property
    def samples(self) -> List[Record]:
        return [r for r in self.records if r.has_memory]

    @property
    def labels(self) -> List[Tuple[float, str]]:
        return [(r.time, r.label) for r in self.records if r.label is not None]


def _parse_time(text: object) -> Optional[float]:
    if not isinstance(text, str):
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.datetime.strptime(text, fmt).timestamp()
        except ValueError:
            continue
    return None


class _NotFinite(ValueError):
    pass


def _no_constant(name: str) -> float:
    raise _NotFinite(f"{name} is not a number a log can hold")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise _NotFinite(f"{text[:20]} is out of range")
    return v


def parse_lines(lines: Iterable[str]) -> ProcessLog:
    """Parse the lines of a log (see the module docstring)."""
    log = ProcessLog(records=[])
    last_line_no = 0
    last_failed_json = False
    for no, raw in enumerate(lines, 1):
        last_line_no = no
        line = raw.rstrip("\r\n")
        last_failed_json = False
        m = _SEED_RE.search(line)
        if m:
            kind = (m.group(1) or "-SAMPLE")[1:]
            text = m.group(2)
        elif line.lstrip().startswith("{"):
            kind = None
            text = line.strip()
        else:
            if line.strip():
                log.skipped += 1
            continue
        if len(line) > MAX_LINE:
            log.bad.append((no, f"longer than {MAX_LINE} bytes"))
            continue
        try:
            data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
        except RecursionError:
            log.bad.append((no, "nested too deeply"))
            continue
        except ValueError as err:
            last_failed_json = True
            log.bad.append((no, str(err) if isinstance(err, _NotFinite) else "not valid JSON"))
            continue
        if not isinstance(data, dict):
            log.bad.append((no, "not a JSON object"))
            continue
        t = _parse_time(data.get("timestamp"))
        pid = data.get("pid")
        if t is None or not isinstance(pid, int):
            log.bad.append((no, "no timestamp or pid"))
            continue
        if kind is None:
            event = data.get("event")
            kind = {"start": "START", "stop": "STOP"}.get(event, "SAMPLE")
        log.records.append(Record(kind=kind, time=t, pid=pid, data=data, line=no))
    # a last line that is cut short is a truncation, not garbage
    if last_failed_json and log.bad and log.bad[-1][0] == last_line_no:
        log.bad.pop()
        log.truncated = True
    return log


def read_log(path: str) -> ProcessLog:
    """Read a process log file.  Raises OSError if it cannot be read and
    NotALogFile if it is not a regular file.  Lines longer than MAX_LINE
    are malformed records; memory stays bounded by the records kept."""
    with open_regular(path) as f:
        return parse_lines(bounded_lines(f))


