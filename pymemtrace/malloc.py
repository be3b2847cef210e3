"""Trace chosen blocks of a program running under ``pymemtrace malloc``.

Interposing malloc needs the preload library loaded when the process starts,
so the in-process API switches an already loaded tracer on and off rather
than loading one::

    # pymemtrace malloc --paused -o app.cap -- python app.py
    from pymemtrace.malloc import Tracing

    with Tracing():
        build_index()          # only allocations made here are recorded

Tracing is process-wide while a block runs (allocations by other threads in
that time are recorded too, each attributed to its own thread's frames).
Blocks nest: tracing stays on until the outermost one ends.  A block freed
after the trace ended is not seen being freed, so it is reported as live: the
report's leak candidates are what the traced blocks allocated and kept.
Leaving a block writes the buffered records out, so the capture is complete
up to there even if the program later crashes.
"""
from __future__ import annotations

import pathlib
import threading
from typing import Optional

from pymemtrace import _malloccap

#: The LD_PRELOAD tracer library that ``pymemtrace malloc`` loads into a program.
LIBRARY = pathlib.Path(__file__).resolve().parent / "libpymemtrace_malloc.so"

__all__ = ["Tracing", "is_traced", "is_tracing", "LIBRARY"]

_lock = threading.Lock()
_depth = 0
_was_on: Optional[int] = None


def is_traced() -> bool:
    """True if this process runs under ``pymemtrace malloc`` (paused or not)."""
    return _malloccap.control(-1) >= 0


def is_tracing() -> bool:
    """True if allocations are being recorded right now."""
    return _malloccap.control(-1) == 1


class Tracing:
    """Context manager: record allocations made while the block runs."""

    def __enter__(self) -> "Tracing":
        global _depth, _was_on
        with _lock:
            if _depth == 0:
                was = _malloccap.control(1)
                if was < 0:
                    raise RuntimeError(
                        "pymemtrace.malloc.Tracing needs the preload tracer: run the program with "
                        "'pymemtrace malloc --paused -o FILE -- python ...'")
                _was_on = was
            _depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        global _depth
        with _lock:
            _depth -= 1
            if _depth == 0 and not _was_on:
                _malloccap.control(0)
