"""Memory limits of a test, checked against its capture (for the pytest plugin).

The limits have pytest-memray's spelling and meaning, so a suite can switch:

* ``parse_size("24 MB")``: a number (``+`` and a fraction allowed) and a unit
  ``B``, ``KB``, ``MB``, ``GB``, ``TB`` or ``PB`` in any case, spaces between
  or not; the units are powers of 1024 (``1 KB`` is 1024 bytes), as in
  pytest-memray.  A plain int is bytes.
* ``check_peak``: memory live at the high-water mark of the capture (the test
  body) above the limit fails; the message lists the stacks live at the peak.
  With one thread asked for, only what that thread allocated and still held
  at that high-water mark counts.
* ``check_leaks``: the limit is per distinct call stack: memory allocated by
  the test and still live at its end, summed per stack (all threads together
  unless one thread is asked for), fails if one stack holds more than the
  limit.  A ``filter_fn(stack)`` returning False drops that stack.

Everything works on :func:`pymemtrace.readers.malloc_stacks.load_stacks`'
result, per stack, never per event.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from pymemtrace.readers.malloc_stacks import frames_of

__all__ = ["parse_size", "fmt_size", "StackFrame", "Stack", "Problem", "check_peak",
           "check_leaks", "top_stack", "format_stack"]

_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40, "PB": 1 << 50}
_SIZE = re.compile(r"\s*\+?(\d*\.\d+|\d+)\s*([KMGTP]?B)\s*", re.IGNORECASE)


def parse_size(text: Union[str, int]) -> int:
    """Bytes in a limit such as ``"24 MB"`` (1 MB = 1024 * 1024 bytes).

    Raises ValueError naming the text when it is not a number and a unit.

    >>> parse_size("24 MB"), parse_size("1.5kb"), parse_size("+2GB"), parse_size(100)
    (25165824, 1536, 2147483648, 100)
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"{text!r} is negative: a limit is a size such as '24 MB'")
        return text
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a size: give a string such as '24 MB'")
    m = _SIZE.fullmatch(text)
    if not m:
        raise ValueError(f"{text!r} is not a size: expected a number and a unit B, KB, MB, "
                         "GB, TB or PB (powers of 1024), such as '24 MB'")
    return int(round(float(m.group(1)) * _UNITS[m.group(2).upper()]))


def fmt_size(n: float) -> str:
    """``31.2 MiB`` (powers of 1024, the limits' units)."""
    for unit, size in (("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20),
                       ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class StackFrame:
    """One frame of a call stack (pytest-memray's attribute names)."""

    function: str
    filename: str
    lineno: int


@dataclass(frozen=True)
class Stack:
    """The call stack of some allocations: ``frames``, innermost first."""

    frames: Tuple[StackFrame, ...]


@dataclass
class Problem:
    """A limit a test went over: one line saying so, then the stacks."""

    summary: str
    details: str

    def text(self) -> str:
        return self.summary + "\n" + self.details


def _merged(r: Dict[str, Any], key: str) -> List[Tuple[int, int, int]]:
    """(bytes, blocks, frame) per distinct stack for `key` ("peak" or
    "leaked"), threads summed, biggest first, zeros left out."""
    acc: Dict[int, List[int]] = {}
    for s in r["stacks"]:
        b, c = s[key + "_bytes"], s[key + "_count"]
        if b or c:
            row = acc.setdefault(s["frame"], [0, 0])
            row[0] += b
            row[1] += c
    out = [(b, c, frame) for frame, (b, c) in acc.items()]
    out.sort(key=lambda t: (-t[0], -t[1], t[2]))
    return out


def _trimmed(frames: Sequence[Tuple[str, str, int]],
             test: Optional[Tuple[str, str]]) -> Tuple[List[Tuple[str, str, int]], bool]:
    """The frames from the innermost to the test function (the test runner's
    frames below it say nothing); all of them if the test is not on the stack.
    Returns the frames and whether the test function ended them."""
    if test:
        for i, (function, file, _line) in enumerate(frames):
            if (file, function) == test:
                return list(frames[:i + 1]), True
    return list(frames), False


def _label(function: str, file: str, line: int, root: Optional[str]) -> str:
    """``function (file:line)``, the file relative to `root` when it is under it."""
    if not file:
        return function
    if root and file.startswith(root.rstrip(os.sep) + os.sep):
        file = file[len(root.rstrip(os.sep)) + 1:]
    return f"{function} ({file}:{line})"


def format_stack(frames: Sequence[Tuple[str, str, int]], test: Optional[Tuple[str, str]],
                 depth: int, indent: str = "      ", root: Optional[str] = None) -> List[str]:
    """The lines of one stack, innermost first, cut at the test function and
    at `depth` frames (the rest counted)."""
    shown, _ = _trimmed(frames, test)
    lines = [indent + _label(*f, root) for f in shown[:depth]]
    if len(shown) > depth:
        lines.append(f"{indent}... {len(shown) - depth} more frames")
    return lines


def _stacks_text(r: Dict[str, Any], rows: List[Tuple[int, int, int]], total: int, what: str,
                 test: Optional[Tuple[str, str]], top: int, depth: int,
                 root: Optional[str]) -> str:
    if not rows:
        return f"  (no stack holds memory {what})"
    shown = rows[:top]
    part = sum(b for b, _c, _f in shown)
    head = (f"  {len(shown)} of {len(rows)} stacks {what}, biggest first, innermost frame "
            f"first" + (f" ({part * 100 // total}% of {fmt_size(total)})" if total else "") + ":")
    out = [head]
    for i, (b, c, frame) in enumerate(shown, 1):
        out.append(f"  #{i} {fmt_size(b)} ({b:,} bytes) in {c:,} block{'s' if c != 1 else ''}")
        out += format_stack(frames_of(r, frame), test, depth, root=root)
    return "\n".join(out)


def check_peak(r: Dict[str, Any], limit: int, limit_text: str, *,
               test: Optional[Tuple[str, str]] = None, top: int = 5,
               depth: int = 10, root: Optional[str] = None) -> Optional[Problem]:
    """A Problem if the capture's peak (live at the high-water mark) is above
    `limit` bytes, else None.  `test` is the (file, function) of the test, to
    cut the stacks there.  With one thread selected (``load_stacks(thread=)``)
    the peak is that thread's own high-water mark: the most that blocks it
    allocated held at once, whenever that was (current_thread_only), not the
    heap's."""
    one = r.get("thread_selected") is not None
    peak = r["peak_live_bytes"] if one else r["peak"]["bytes"]
    if peak <= limit:
        return None
    summary = (f"peak memory {fmt_size(peak)} ({peak:,} bytes)"
               + (" of the test's thread" if one else "")
               + f" is over limit_memory({limit_text!r}) = {fmt_size(limit)}")
    rows = _merged(r, "peak")
    return Problem(summary, _stacks_text(r, rows, peak, "live at the peak", test, top, depth,
                                         root))


def check_leaks(r: Dict[str, Any], limit: int, limit_text: str, *,
                filter_fn: Optional[Callable[[Stack], bool]] = None,
                test: Optional[Tuple[str, str]] = None, top: int = 5,
                depth: int = 10, root: Optional[str] = None) -> Optional[Problem]:
    """A Problem if a stack holds more than `limit` bytes still live at the end
    of the capture (made during the test, not freed), else None."""
    over = []
    for b, c, frame in _merged(r, "leaked"):
        if b <= limit:
            break
        frames = frames_of(r, frame)
        if filter_fn is not None and not filter_fn(
                Stack(tuple(StackFrame(f, file, line) for f, file, line in frames))):
            continue
        over.append((b, c, frame))
    if not over:
        return None
    total = r["leaked_bytes"]
    worst = over[0][0]
    summary = (f"{len(over)} stack{'s' if len(over) != 1 else ''} leaked more than "
               f"limit_leaks({limit_text!r}) = {fmt_size(limit)} per stack (the worst "
               f"{fmt_size(worst)}; {fmt_size(total)} left allocated by the test in all)")
    return Problem(summary, _stacks_text(r, over, total, "over the limit, still live at the "
                                         "end", test, top, depth, root))


def top_stack(r: Dict[str, Any], test: Optional[Tuple[str, str]] = None, depth: int = 3,
              root: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The stack holding most at the peak: its bytes and a one-line label
    (innermost frames first, ending at the test function, frames between left out)."""
    rows = _merged(r, "peak")
    if not rows:
        return None
    b, _c, frame = rows[0]
    shown, at_test = _trimmed(frames_of(r, frame), test)
    labels = [_label(*f, root) for f in shown]
    if len(labels) > depth:
        tail = labels[-1:] if at_test else []
        gone = len(labels) - (depth - len(tail)) - len(tail)
        labels = labels[:depth - len(tail)] + [f"({gone} more)"] + tail
    return {"bytes": b, "where": " <- ".join(labels)}
