"""Trace the allocations of a block of a running program.

``Tracker`` records one block of any program, with nothing preloaded: it loads
the tracer library into the running process and points every loaded object's
calls to malloc, free and friends at it, then puts them back::

    from pymemtrace.malloc import Tracker

    with Tracker("block.cap"):          # native=True: native stacks too
        build_index()
    # pymemtrace malloc report block.cap

``Tracing`` switches the tracer of a program started under
``pymemtrace malloc --paused`` on and off instead::

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

import atexit
import errno
import os
import pathlib
import threading
import warnings
from typing import Optional, Union

from pymemtrace import _malloccap

#: The LD_PRELOAD tracer library that ``pymemtrace malloc`` loads into a program.
LIBRARY = pathlib.Path(__file__).resolve().parent / "libpymemtrace_malloc.so"

__all__ = ["Tracker", "Tracing", "is_traced", "is_tracing", "LIBRARY"]

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


# ---- Tracker: in-process tracking, nothing preloaded --------------------------------

_INPROC_NATIVE = 1
_tracker_lock = threading.Lock()
_active: Optional["Tracker"] = None
_lib = None


def _library():
    """The tracer library, loaded once and never unloaded (slots and threads
    may keep pointers to its functions)."""
    global _lib
    if _lib is None:
        import ctypes

        if not LIBRARY.exists():
            raise RuntimeError(f"the tracer library is missing: {LIBRARY} (reinstall pymemtrace)")
        lib = ctypes.CDLL(str(LIBRARY), mode=os.RTLD_LOCAL | os.RTLD_NODELETE | os.RTLD_NOW)
        lib.pmt_inproc_start.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.pmt_inproc_start.restype = ctypes.c_int
        lib.pmt_inproc_stop.argtypes = []
        lib.pmt_inproc_stop.restype = ctypes.c_int
        lib.pmt_inproc_error.argtypes = []
        lib.pmt_inproc_error.restype = ctypes.c_char_p
        lib.pmt_inproc_left.argtypes = []
        lib.pmt_inproc_left.restype = ctypes.c_long
        _lib = lib
    return _lib


def _under_preload() -> bool:
    return is_traced() or "libpymemtrace_malloc" in os.environ.get("LD_PRELOAD", "")


class Tracker:
    """Context manager: record every allocation made in this process while
    the block runs, into the capture ``path``, with nothing preloaded.

    Every thread is traced while the block runs (the interposition is
    process-wide; a Tracker may be started in any thread).  Each allocation
    carries its whole Python stack, and with ``native=True`` its native stack
    with the Python frames in place.  Leaving the block puts every call back
    as it was, ends the capture and packs it: ``pymemtrace malloc report``,
    ``flamegraph`` and ``export`` read it.  ``pack=False`` leaves it unpacked
    (larger on disk, read the same, a faster exit: for a capture read once).

    One Tracker at a time per process: a second one raises RuntimeError, as
    does a Tracker in a program run by ``pymemtrace malloc`` (use
    :class:`Tracing` there).  ``path`` must not exist (FileExistsError); a
    path that cannot be created raises OSError; either before anything is
    interposed.  A child forked inside the block traces nothing.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], *, native: bool = False,
                 pack: bool = True) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.native = bool(native)
        self.pack = bool(pack)
        #: slots put back by the last exit, and those left as someone else rewrote them
        self.restored = 0
        self.left = 0
        self._pid: Optional[int] = None

    def __repr__(self) -> str:
        return f"Tracker({self.path!r}, native={self.native}, pack={self.pack})"

    def __enter__(self) -> "Tracker":
        global _active
        with _tracker_lock:
            if _active is not None and _active._pid == os.getpid():
                raise RuntimeError(
                    f"pymemtrace.malloc.Tracker: already tracking into {_active.path}; "
                    "one Tracker at a time per process")
            if _under_preload():
                raise RuntimeError(
                    "pymemtrace.malloc.Tracker: this process runs under 'pymemtrace malloc' "
                    "(LD_PRELOAD); use pymemtrace.malloc.Tracing() to trace a block there")
            lib = _library()
            rc = lib.pmt_inproc_start(os.fsencode(self.path),
                                      _INPROC_NATIVE if self.native else 0)
            if rc < 0:
                msg = "pymemtrace.malloc.Tracker: " + lib.pmt_inproc_error().decode(
                    "utf-8", "replace")
                code = -rc
                if code in (errno.EBUSY, errno.EALREADY, errno.ENOTSUP, errno.ENOSYS):
                    raise RuntimeError(msg)
                raise OSError(code, f"{msg}: {os.strerror(code)}", self.path)
            self._pid = os.getpid()
            _active = self
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        global _active
        with _tracker_lock:
            if _active is not self:
                return
            _active = None
            lib = _library()
            rc = lib.pmt_inproc_stop()
            if self._pid != os.getpid():
                return      # a forked child: it traced nothing; the capture is the parent's
            if rc < 0:
                raise RuntimeError("pymemtrace.malloc.Tracker: " + lib.pmt_inproc_error().decode(
                    "utf-8", "replace"))
            self.restored = rc
            self.left = lib.pmt_inproc_left()
        if self.left:
            warnings.warn(f"pymemtrace.malloc.Tracker: {self.left} relocation slot(s) were "
                          "rewritten by someone else while tracking and were left as they are",
                          RuntimeWarning, stacklevel=3)
        from pymemtrace.readers.malloc_capture import capture_header, stop_reason
        h = capture_header(self.path)
        if h and h["stop_errno"]:
            warnings.warn(f"pymemtrace.malloc.Tracker: the capture {self.path} stopped at event "
                          f"{h['stop_events']:,} because {stop_reason(h['stop_errno'])}",
                          RuntimeWarning, stacklevel=3)
        if self.pack:
            _malloccap.pack(self.path)


@atexit.register
def _stop_at_exit() -> None:
    """The interpreter exits inside a Tracker (a thread's, or one entered by
    hand): end and pack its capture."""
    t = _active
    if t is not None and t._pid == os.getpid():
        t._stop()
