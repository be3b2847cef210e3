"""Reconcile the malloc() and free() calls of a tracing log: what is still allocated.

Reads two formats, told apart by their content:

* the original pymemtrace's DTrace log (macOS), between ``dtrace:::BEGIN``
  and ``dtrace:::END`` lines, one call per line::

     77633  cmn_cmd_opts.py:141  -> set_log_level malloc(560) pntr 0x7fca83ef4240
     77633       process.py:268  -> _get_process_data free(0x7fca83c00620)

* the output of our bpftrace script ``py_flow_malloc_free`` (Linux;
  ``pymemtrace bpftrace run py_flow_malloc_free -o LOG -- python app.py``),
  whose ``call``/``return`` lines give each allocation its Python function::

     7307   7307   17     2 call       -> f (/tmp/app.py:10)
     7307   7307   12     2 malloc       4096 -> 0x3f714550
     7307   7307   30     2 free         4096 <- 0x3f714550

  A ``realloc`` is a free of the old block and a malloc of the new one.

:func:`read_dtrace_log` (a path) and :func:`read_dtrace_log_file` (a text
stream) return a :class:`DTraceMallocs`: the blocks still allocated at the
end (``malloc_dict``, address -> :class:`DTraceMallocCall`), byte and call
counts, peaks, and the lines that could not be reconciled (a free of a block
allocated before tracing began, an address allocated twice).
:func:`pprint_mallocs` prints the summary; ``python -m
pymemtrace.util.dtrace_log_analyse LOG`` does both.  Anything that is
neither format raises ValueError.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import time
from typing import Dict, List, Optional, TextIO

__all__ = ["RE_MALLOC", "RE_FREE", "DTraceMallocCall", "DTraceFreeCall", "DTraceMallocs",
           "match_malloc_line", "match_free_line", "read_dtrace_log_file", "read_dtrace_log",
           "pprint_mallocs", "main"]

logger = logging.getLogger(__name__)

# ---- the original's DTrace lines ------------------------------------------------------
#: A DTrace malloc line: groups (pid, file, line, function, size, address).
RE_MALLOC = re.compile(r"^\s*(\d+)\s+([^:]+?)?:(\d+)\s+->\s*(\S.*?\S|\S)?\s+"
                       r"malloc\((\d+)\)\s+pntr\s+(0x[0-9a-fA-F]+)\s*$")
#: A DTrace free line: groups (pid, file, line, function, address).
RE_FREE = re.compile(r"^\s*(\d+)\s+([^:]+?)?:(\d+)\s+->\s*(\S.*?\S|\S)?\s+"
                     r"free\((0x[0-9a-fA-F]+)\)\s*$")
# Lines whose probe text was garbled (DTrace copies strings late): only the call.
_LOOSE_MALLOC = re.compile(r"^\s*(\d+)?.*\bmalloc\((\d+)\)\s+pntr\s+(0x[0-9a-fA-F]+)\s*$")
_LOOSE_FREE = re.compile(r"^\s*(\d+)?.*\bfree\((0x[0-9a-fA-F]+)\)\s*$")
_BEGIN = {"dtrace:::BEGIN"}
_END = {"dtrace:::END", "dtrace::END"}      # the original's docs write the second

# ---- our bpftrace py_flow_malloc_free lines ----------------------------------------------
_BPF_HEADER = re.compile(r"^pymemtrace py_flow_malloc_free: tracing PID \d+")
_BPF_EVENT = re.compile(r"^\s*(\d+)\s+(\d+)\s+\d+\s+(\d+)\s+"
                        r"(call|return|malloc|calloc|realloc|free)\s+(.*?)\s*$")
_BPF_CALL = re.compile(r"^-> (\S+) \((.*):(-?\d+)\)$")
_BPF_ALLOC = re.compile(r"^(\d+) -> (0x[0-9a-fA-F]+)$")
_BPF_REALLOC = re.compile(r"^(\d+) -> (0x[0-9a-fA-F]+) \(was (\d+) at (0x[0-9a-fA-F]+)\)$")
_BPF_FREE = re.compile(r"^(\d+) <- (0x[0-9a-fA-F]+)$")
_BPF_OTHER = re.compile(r"^(Attaching \d+ probes|\s*PID\s+TID\s|=== pymemtrace |@\w+\[|Lost \d+ events)")
#: The function of allocations made while no Python function ran.
NO_FRAME = "(no Python frame)"


@dataclasses.dataclass
class DTraceMallocCall:
    """One allocation: where in the log, by which process, where in Python."""

    log_line: int
    process: int
    file: str
    line: int
    function: Optional[str]
    size: int
    pointer: int


@dataclasses.dataclass
class DTraceFreeCall:
    """One free() of *pointer* (0 for free(NULL))."""

    log_line_num: int
    process: int
    file: str
    line: int
    function: Optional[str]
    pointer: int


class DTraceMallocs:
    """The running reconciliation of malloc and free calls (see the module doc)."""

    def __init__(self) -> None:
        #: Blocks allocated and not freed: address -> the malloc call.
        self.malloc_dict: Dict[int, DTraceMallocCall] = {}
        self.count_mallocs = 0
        self.count_frees_non_null = 0
        self.count_frees_null = 0
        self.count_lines = 0
        self.total_bytes_malloced = 0
        self.total_bytes_freed = 0
        self.total_bytes_outstanding = 0
        self.max_malloc = 0
        self.max_allocations = 0
        self.max_bytes_outstanding = 0
        #: A malloc of an address already allocated (its free was not seen).
        self.failed_to_add_malloc = 0
        #: A free of an address not allocated while tracing.
        self.failed_to_add_free = 0
        self.failed_to_parse_line = 0
        #: Which format was read: "dtrace" or "bpftrace".
        self.format = ""

    def __len__(self) -> int:
        return len(self.malloc_dict)

    def add_malloc(self, malloc_call: DTraceMallocCall) -> None:
        self.count_lines += 1
        if malloc_call.pointer in self.malloc_dict:
            logger.debug("line %d: 0x%x allocated again (first at line %d)", malloc_call.log_line,
                         malloc_call.pointer, self.malloc_dict[malloc_call.pointer].log_line)
            self.failed_to_add_malloc += 1
            return
        self.malloc_dict[malloc_call.pointer] = malloc_call
        self.count_mallocs += 1
        self.total_bytes_malloced += malloc_call.size
        self.total_bytes_outstanding += malloc_call.size
        self.max_malloc = max(self.max_malloc, malloc_call.size)
        self.max_allocations = max(self.max_allocations, len(self.malloc_dict))
        self.max_bytes_outstanding = max(self.max_bytes_outstanding, self.total_bytes_outstanding)

    def add_free(self, free_call: DTraceFreeCall) -> None:
        self.count_lines += 1
        if free_call.pointer == 0:
            self.count_frees_null += 1
            return
        block = self.malloc_dict.pop(free_call.pointer, None)
        if block is None:
            logger.debug("line %d: free of 0x%x, not allocated while tracing", free_call.log_line_num,
                         free_call.pointer)
            self.failed_to_add_free += 1
            return
        self.count_frees_non_null += 1
        self.total_bytes_freed += block.size
        self.total_bytes_outstanding -= block.size

    def str_failures(self) -> str:
        return (f"Total lines: {self.count_lines + self.failed_to_parse_line:,d}"
                f" Failed parse lines: {self.failed_to_parse_line:,d}"
                f" Failed malloc: {self.failed_to_add_malloc:,d}"
                f" Failed free: {self.failed_to_add_free:,d}")


def match_malloc_line(line: str, log_line: int) -> Optional[DTraceMallocCall]:
    """The malloc call of a DTrace log line, or None."""
    m = RE_MALLOC.match(line)
    if m is not None:
        return DTraceMallocCall(log_line, int(m.group(1)), m.group(2) or "", int(m.group(3)), m.group(4),
                                int(m.group(5)), int(m.group(6), 16))
    m = _LOOSE_MALLOC.match(line)
    if m is not None:
        return DTraceMallocCall(log_line, int(m.group(1) or -1), "", -1, None, int(m.group(2)),
                                int(m.group(3), 16))
    return None


def match_free_line(line: str, log_line: int) -> Optional[DTraceFreeCall]:
    """The free call of a DTrace log line, or None."""
    m = RE_FREE.match(line)
    if m is not None:
        return DTraceFreeCall(log_line, int(m.group(1)), m.group(2) or "", int(m.group(3)), m.group(4),
                              int(m.group(5), 16))
    m = _LOOSE_FREE.match(line)
    if m is not None:
        return DTraceFreeCall(log_line, int(m.group(1) or -1), "", -1, None, int(m.group(2), 16))
    return None


def _dtrace_line(dtm: DTraceMallocs, line: str, no: int) -> None:
    call = match_malloc_line(line, no)
    if call is not None:
        dtm.add_malloc(call)
        return
    free = match_free_line(line, no)
    if free is not None:
        dtm.add_free(free)
        return
    logger.debug("line %d: not a malloc or free: %r", no, line[:200])
    dtm.failed_to_parse_line += 1


class _BpfReader:
    """State of a py_flow_malloc_free log: the Python stack of each thread."""

    def __init__(self, dtm: DTraceMallocs) -> None:
        self.dtm = dtm
        self.stacks: Dict[int, List[tuple]] = {}

    def where(self, tid: int, depth: int) -> tuple:
        stack = self.stacks.get(tid, [])
        if 0 < depth <= len(stack):
            return stack[depth - 1]
        return ("", -1, NO_FRAME)

    def line(self, m: "re.Match[str]", no: int) -> bool:
        pid, tid, depth, kind, detail = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4), m.group(5)
        stack = self.stacks.setdefault(tid, [])
        if kind == "call":
            c = _BPF_CALL.match(detail)
            if c is None:
                return False
            del stack[max(depth - 1, 0):]
            stack.extend([("", -1, NO_FRAME)] * (depth - 1 - len(stack)))
            stack.append((c.group(2), int(c.group(3)), c.group(1)))
            return True
        if kind == "return":
            del stack[max(depth - 1, 0):]
            return True
        file, lineno, func = self.where(tid, depth)
        if kind == "free":
            f = _BPF_FREE.match(detail)
            if f is None:
                return False
            self.dtm.add_free(DTraceFreeCall(no, pid, file, lineno, func, int(f.group(2), 16)))
            return True
        if kind == "realloc":
            r = _BPF_REALLOC.match(detail)
            if r is None:
                return False
            old, new = int(r.group(4), 16), int(r.group(2), 16)
            if old:
                self.dtm.add_free(DTraceFreeCall(no, pid, file, lineno, func, old))
            if new:
                self.dtm.add_malloc(DTraceMallocCall(no, pid, file, lineno, func, int(r.group(1)), new))
            return True
        a = _BPF_ALLOC.match(detail)     # malloc, calloc
        if a is None:
            return False
        self.dtm.add_malloc(DTraceMallocCall(no, pid, file, lineno, func, int(a.group(1)), int(a.group(2), 16)))
        return True


def read_dtrace_log_file(log_file: TextIO) -> DTraceMallocs:
    """Reconcile the calls of a log read from the text stream *log_file*.

    ValueError if it holds neither a ``dtrace:::BEGIN`` block nor
    py_flow_malloc_free output.
    """
    if not hasattr(log_file, "readline"):
        raise TypeError(f"read_dtrace_log_file reads a text stream (an open log file), "
                        f"not {type(log_file).__name__}")
    dtm = DTraceMallocs()
    bpf: Optional[_BpfReader] = None
    in_block = False
    for no, raw in enumerate(log_file, 1):
        if isinstance(raw, bytes):
            raise TypeError("read_dtrace_log_file reads a text stream: open the log in text mode")
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if bpf is not None:
            m = _BPF_EVENT.match(line)
            if m is not None and bpf.line(m, no):
                continue
            if m is not None or not _BPF_OTHER.match(line):
                dtm.failed_to_parse_line += 1
            continue
        word = line.strip()
        if in_block:
            if word in _END:
                logger.info("end of the DTrace block at line %d", no)
                break
            _dtrace_line(dtm, line, no)
        elif word in _BEGIN:
            in_block = True
            dtm.format = "dtrace"
            logger.info("DTrace block starts at line %d", no)
        elif _BPF_HEADER.match(word) or (not dtm.format and _BPF_EVENT.match(line)
                                          and _BPF_EVENT.match(line).group(4) != "call"):
            bpf = _BpfReader(dtm)
            dtm.format = "bpftrace"
            m = _BPF_EVENT.match(line)
            if m is not None and not bpf.line(m, no):
                dtm.failed_to_parse_line += 1
    if not dtm.format:
        raise ValueError("not a malloc/free trace: no 'dtrace:::BEGIN' line and no "
                         "py_flow_malloc_free output (pymemtrace bpftrace run py_flow_malloc_free)")
    return dtm


def read_dtrace_log(log_path: str) -> DTraceMallocs:
    """:func:`read_dtrace_log_file` of the file at *log_path* (bytes that are
    not UTF-8, as DTrace's garbled strings, are read as Latin-1)."""
    from pymemtrace.util.logfile import open_log
    with open_log(log_path, "log file", encoding="latin-1") as f:
        try:
            return read_dtrace_log_file(f)
        except ValueError as err:
            raise ValueError(f"{os.fspath(log_path)}: {err}") from None


def pprint_mallocs(dtm: DTraceMallocs, st: TextIO = sys.stdout) -> None:
    """Write the summary of *dtm* to *st*."""
    rows = [
        ("Blocks still allocated", len(dtm)),
        ("Bytes still allocated", dtm.total_bytes_outstanding),
        ("Peak bytes allocated", dtm.max_bytes_outstanding),
        ("Bytes allocated", dtm.total_bytes_malloced),
        ("Bytes freed", dtm.total_bytes_freed),
        ("Largest allocation", dtm.max_malloc),
        ("Peak blocks allocated", dtm.max_allocations),
        ("Allocations", dtm.count_mallocs),
        ("Frees", dtm.count_frees_non_null),
        ("Frees of NULL", dtm.count_frees_null),
    ]
    st.write(f"DTraceMallocs ({dtm.format or 'empty'} log):\n")
    for label, value in rows:
        st.write(f"{label:>24}: {value:14,d}\n")
    st.write(dtm.str_failures() + "\n")


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m pymemtrace.util.dtrace_log_analyse LOG``."""
    parser = argparse.ArgumentParser(
        prog="python -m pymemtrace.util.dtrace_log_analyse",
        description="Reconcile the malloc and free calls of a DTrace log (the original pymemtrace's "
                    "format) or of 'pymemtrace bpftrace run py_flow_malloc_free' output; print what "
                    "is still allocated at the end.")
    parser.add_argument("-l", "--log_level", type=int, dest="log_level", default=logging.WARNING,
                        help="log level (debug=10 lists every line not reconciled) [default: %(default)s]")
    parser.add_argument("path_in", help="the log to read")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s - %(levelname)-8s - %(message)s",
                        stream=sys.stderr)
    t0 = time.perf_counter()
    try:
        result = read_dtrace_log(args.path_in)
    except (OSError, ValueError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else err
        print(f"{parser.prog}: error: {why}", file=sys.stderr)
        return 1
    pprint_mallocs(result)
    print(f"Process time: {time.perf_counter() - t0:.3f} (s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
