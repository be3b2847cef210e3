"""Read a ReferenceTracing log: which objects are still alive, which came and went.

``process_file(file, include_untracked, recurse_files)`` reads the log of
:class:`pymemtrace.reference_tracing.ReferenceTracing` (``NEW:`` / ``DEL:``
rows) and returns a :class:`LogFileResult`: the objects created in the log and
never destroyed there (``live``: the leak candidates, with the line that made
them), those that came and went (``previous``), and per-type counts.
``long_str_list()`` is the report as lines.  With *include_untracked*, rows
destroying objects created before the log began are kept in
``untracked``; with *recurse_files*, the logs of nested tracers named in
``Detaching ... New file:`` lines are read too (as ``children``).

The names are the original pymemtrace's.  Command line::

    python -m pymemtrace.util.ref_trace_analyse LOG [--untracked] [--recurse] [--short-paths]

A truncated last line (a program that crashed) is ignored.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import typing

from pymemtrace.readers.textfile import MAX_LINE
from pymemtrace.util.logfile import open_log

__all__ = ["Site", "ObjectData", "LogFileResult", "process_file", "process_file_path", "main",
           "RE_COMPILE_LOG_FILE_MSG"]

#: A message row, ``MSG: CLOCK # TEXT``: groups (clock, text).
RE_COMPILE_LOG_FILE_MSG = re.compile(r"^MSG:\s+(\S+)\s+#\s?(.*?)\s*$")
_DETACH = re.compile(r"^Detaching this Reference Tracing file wrapper\. New file: (.+)$")


@dataclasses.dataclass(frozen=True)
class Site:
    """Where an event happened: the Python file, line and function."""
    file: str
    line: int
    function: str

    def short(self, full_path: bool) -> str:
        return f"{self.file if full_path else os.path.basename(self.file)}#{self.line}"


@dataclasses.dataclass
class ObjectData:
    """One object: its address and type, and where it was created / destroyed."""
    address: int
    type_name: str
    new: typing.Optional[Site] = None
    deleted: typing.Optional[Site] = None
    log_line: int = 0


@dataclasses.dataclass
class LogFileResult:
    """What one log says (see the module's documentation)."""
    path: str = ""
    message: str = ""
    live: typing.Dict[int, ObjectData] = dataclasses.field(default_factory=dict)
    previous: typing.List[ObjectData] = dataclasses.field(default_factory=list)
    untracked: typing.List[ObjectData] = dataclasses.field(default_factory=list)
    type_counts: typing.Dict[str, typing.List[int]] = dataclasses.field(default_factory=dict)
    messages: typing.List[str] = dataclasses.field(default_factory=list)
    children: typing.List["LogFileResult"] = dataclasses.field(default_factory=list)
    rows: int = 0
    bad_lines: int = 0

    @property
    def log_file_id(self) -> str:
        """The original's name for :attr:`path`."""
        return self.path

    def live_by_type(self) -> typing.Dict[str, int]:
        out: typing.Dict[str, int] = {}
        for obj in self.live.values():
            out[obj.type_name] = out.get(obj.type_name, 0) + 1
        return out

    def long_str_list(self, show_full_path: bool = True,
                      include_historical: bool = True) -> typing.List[str]:
        """The report as lines: live objects, (previous ones), type counts."""
        out = [f"Log: {self.path or '(stream)'}  {self.rows} rows"]
        out.append(f"Live Objects [{len(self.live)}]:")
        for obj in sorted(self.live.values(), key=lambda o: (o.type_name, o.address)):
            site = obj.new.short(show_full_path) if obj.new else "?"
            func = obj.new.function if obj.new else "?"
            out.append(f"    0x{obj.address:x} {obj.type_name:<32} {func:<28} {site}")
        if include_historical:
            out.append(f"Previous Objects [{len(self.previous)}]:")
            for obj in self.previous:
                new = obj.new.short(show_full_path) if obj.new else "?"
                dele = obj.deleted.short(show_full_path) if obj.deleted else "?"
                out.append(f"    0x{obj.address:x} {obj.type_name:<32} NEW: {new} DEL: {dele}")
        if self.untracked:
            out.append(f"Untracked DEL [{len(self.untracked)}] (objects older than the log)")
        out.append(f"Type count [{len(self.type_counts)}]:")
        out.append(f"    {'Type':<40} {'New':>8} {'Del':>8} {'New - Del':>10}")
        for name in sorted(self.type_counts):
            n, d = self.type_counts[name]
            out.append(f"    {name:<40} {n:>8} {d:>8} {n - d:>10}")
        for child in self.children:
            out.extend("  " + line for line in child.long_str_list(show_full_path,
                                                                  include_historical))
        return out


def _parse_row(line: str) -> typing.Optional[typing.Tuple[str, int, str, Site]]:
    """(kind, address, type, site) of a NEW:/DEL: row, or None if malformed."""
    parts = line.split()
    # kind clock address live type FILE... line function rss drss
    if len(parts) < 10:
        return None
    try:
        address = int(parts[2], 16)
        lineno = int(parts[-4])
        int(parts[-2]), int(parts[-1])
    except ValueError:
        return None
    return parts[0], address, parts[4], Site(" ".join(parts[5:-4]), lineno, parts[-3])


def process_file(file: typing.TextIO, *args: typing.Any, include_untracked: bool = False,
                 recurse_files: bool = False, log_file_id: typing.Optional[str] = None,
                 file_size: int = 0, recurse_log_files: typing.Optional[bool] = None,
                 _seen: typing.Optional[typing.Set[str]] = None) -> LogFileResult:
    """Read one ReferenceTracing log from an open text file.

    ``process_file(file, include_untracked, recurse_files)``, or as the
    original's 0.6 release calls it, ``process_file(file, log_file_id,
    file_size, include_untracked, recurse_log_files)`` (``log_file_id`` names
    the log in the report; ``file_size`` only fed the original's progress bar).
    """
    if len(args) == 2:
        include_untracked, recurse_files = args
    elif len(args) == 4:
        log_file_id, file_size, include_untracked, recurse_files = args
    elif args:
        raise TypeError("process_file(file, include_untracked, recurse_files) or "
                        "process_file(file, log_file_id, file_size, include_untracked, "
                        f"recurse_log_files): got {1 + len(args)} positional arguments")
    if recurse_log_files is not None:
        recurse_files = recurse_log_files
    result = LogFileResult(path=log_file_id if log_file_id is not None else getattr(file, "name", "") or "")
    if not isinstance(result.path, str):
        result.path = ""
    seen = _seen if _seen is not None else set()
    for number, line in enumerate(_whole_lines(file), 1):
        if line.startswith(("NEW: ", "DEL: ")):
            row = _parse_row(line)
            if row is None:
                result.bad_lines += 1
                continue
            kind, address, type_name, site = row
            result.rows += 1
            counts = result.type_counts.setdefault(type_name, [0, 0])
            if kind == "NEW:":
                counts[0] += 1
                old = result.live.pop(address, None)
                if old is not None:         # freed unseen (CPython 3.13.0-3.13.2)
                    result.previous.append(old)
                result.live[address] = ObjectData(address, type_name, new=site, log_line=number)
            else:
                counts[1] += 1
                obj = result.live.pop(address, None)
                if obj is not None:
                    obj.deleted = site
                    result.previous.append(obj)
                elif include_untracked:
                    result.untracked.append(ObjectData(address, type_name, deleted=site,
                                                       log_line=number))
        elif line.startswith("MSG: "):
            result.messages.append(line)
            msg = RE_COMPILE_LOG_FILE_MSG.match(line)
            m = _DETACH.match(msg.group(2)) if msg else None
            if m and recurse_files and os.path.isfile(m.group(1)) \
                    and os.path.realpath(m.group(1)) not in seen:
                result.children.append(process_file_path(m.group(1), include_untracked, True,
                                                         _seen=seen))
        elif number == 1 and line not in ("SOF",):
            result.message = line
    return result


def _whole_lines(file: typing.IO) -> typing.Iterator[str]:
    """The lines of *file* that end with a newline, without it: a last piece
    without one was cut short (a program that crashed) and is not read.  A
    line longer than MAX_LINE is cut there (and then does not parse)."""
    while True:
        line = file.readline(MAX_LINE + 1)
        if not line.endswith("\n"):
            if len(line) <= MAX_LINE:
                return                  # the end, perhaps cut short
            while line and not line.endswith("\n"):
                line = file.readline(MAX_LINE)
            yield ""                    # an overlong line: read, dropped
            continue
        yield line[:-1]


def process_file_path(file_path: str, include_untracked: bool,
                      recurse_files: bool, *,
                      _seen: typing.Optional[typing.Set[str]] = None) -> LogFileResult:
    """Read the ReferenceTracing log at *file_path*.  Raises OSError if it
    cannot be read and ValueError if it is not a regular file.
    A nested log already read (a log that names itself) is not read again."""
    seen = _seen if _seen is not None else set()
    seen.add(os.path.realpath(file_path))
    with open_log(file_path, "ReferenceTracing log") as f:
        result = process_file(f, include_untracked, recurse_files, _seen=seen)
    result.path = file_path
    return result


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pymemtrace.util.ref_trace_analyse",
        description="Report the objects a ReferenceTracing log shows alive at its end.",
        epilog="Example: python -m pymemtrace.util.ref_trace_analyse rt.log --short-paths")
    parser.add_argument("log", help="a ReferenceTracing log file")
    parser.add_argument("--untracked", action="store_true",
                        help="also list destructions of objects older than the log")
    parser.add_argument("--recurse", action="store_true",
                        help="also read the logs of nested tracers")
    parser.add_argument("--short-paths", action="store_true", help="file names without directories")
    parser.add_argument("--no-history", action="store_true",
                        help="leave out the objects that were created and destroyed")
    a = parser.parse_args(argv)
    try:
        result = process_file_path(a.log, a.untracked, a.recurse)
    except OSError as err:
        print(f"ref_trace_analyse: cannot read {a.log}: {err.strerror}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"ref_trace_analyse: {err}", file=sys.stderr)
        return 1
    print("\n".join(result.long_str_list(not a.short_paths, not a.no_history)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
