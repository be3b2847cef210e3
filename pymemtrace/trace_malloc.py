"""A compensated wrapper around :mod:`tracemalloc`.

:class:`TraceMalloc` is a context manager that snapshots :mod:`tracemalloc`
either side of a block and reports what the block allocated, line by line
(``statistics``), with the lines caused by the snapshot machinery itself
removed (``net_statistics``), and as one number (``diff``).
:func:`trace_malloc_log` is a function decorator that logs that number.

How the compensation works
--------------------------
:mod:`tracemalloc` costs memory in two ways, and neither should be charged to
the traced block:

* Its own bookkeeping (the trace tables and the interned tracebacks).  This
  is allocated with the raw allocator and is never part of the traced memory;
  it is reported separately as ``memory_start`` / ``memory_finish``
  (``tracemalloc.get_tracemalloc_memory()`` at either end of the block) and
  their difference ``tracemalloc_memory_usage``.
* The Python objects that taking a snapshot creates (the snapshot's tuple of
  traces, the Snapshot and Traceback objects...).  These *are* traced, and
  the start snapshot is alive when the finish snapshot is taken, so a naive
  comparison charges it to the block.  Every one of those allocations is made
  by a frame in ``tracemalloc.py`` or in this file, so both snapshots are
  filtered with ``tracemalloc.Filter(False, <that file>)`` before they are
  compared.  ``net_statistics`` and ``diff`` come from the filtered
  comparison; ``statistics`` is the unfiltered one, as tracemalloc sees it.

``diff`` is therefore the net traced memory allocated by the block's own
code: the sum of ``size_diff`` over ``net_statistics``.

If tracemalloc was not tracing before the block, memory allocated before it
and freed in the block is invisible (tracemalloc never saw it), so ``diff``
then counts what the block allocated and kept; start tracing earlier (an
outer ``TraceMalloc`` or ``tracemalloc.start()``) to see frees as negative.

tracemalloc traces every thread: allocations other threads make during the
block are counted too.  Only ``trace_malloc.py`` itself counts as
pymemtrace's own; allocations by other pymemtrace tools used inside the block
are the block's.

The process is left as found: if :mod:`tracemalloc` was not tracing on entry
it is started for the block and stopped on exit; if it was already tracing
(an outer :class:`TraceMalloc`, or the user's own ``tracemalloc.start()``),
it is left running with its traceback limit unchanged.

Names of the original pymemtrace (0.6) work beside ours: ``net_statistics``
is a list that can also be called (``tm.net_statistics()`` returns the same
list), ``TraceMalloc.TRACE_ON`` switches every TraceMalloc (and
:func:`trace_malloc_log`) off, ``TraceMalloc.ALLOWED_GRANULARITY``,
``tracemalloc_snapshot_start`` and ``tracemalloc_snapshot_finish``.
"""
from __future__ import annotations

import functools
import logging
import sys
import tracemalloc
import typing

__all__ = ["TraceMalloc", "trace_malloc_log", "ALLOWED_GRANULARITIES", "StatisticList"]

logger = logging.getLogger(__name__)

#: The values accepted for ``statistics_granularity`` (tracemalloc's key_type).
ALLOWED_GRANULARITIES = ("filename", "lineno", "traceback")

# Frames to use when this wrapper starts tracemalloc for 'traceback' granularity.
_TRACEBACK_FRAMES = 16


#: What ``diff`` is when tracing was switched off (``TraceMalloc.TRACE_ON``
#: False), as the original pymemtrace returns it.
DIFF_WHEN_OFF = -sys.maxsize - 1


class StatisticList(list):
    """A list of ``tracemalloc.StatisticDiff`` that can also be called.

    Read it as an attribute (``for stat in tm.net_statistics``) or call it as
    the original pymemtrace does (``tm.net_statistics()``): the call returns
    the list itself.
    """
    __slots__ = ()

    def __call__(self) -> "StatisticList":
        return self


def _machinery_filters() -> typing.List[tracemalloc.Filter]:
    """Filters that exclude the allocations made by the snapshot machinery."""
    return [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, __file__),
    ]


class TraceMalloc:
    """Snapshot :mod:`tracemalloc` either side of a ``with`` block.

    *statistics_granularity* is tracemalloc's ``key_type`` for the statistics:
    one of ``'filename'``, ``'lineno'`` or ``'traceback'``.

    After the block:

    * ``memory_start``, ``memory_finish``: tracemalloc's own memory
      (``tracemalloc.get_tracemalloc_memory()``) at the start and the end;
      ``tracemalloc_memory_usage`` is their difference.
    * ``diff``: net bytes the block allocated (traced memory, without what the
      snapshot machinery allocated).
    * ``statistics``: ``tracemalloc.StatisticDiff`` list, largest change first.
    * ``net_statistics``: the same without tracemalloc's and pymemtrace's lines.

    Reading the results before the block has finished raises RuntimeError.
    Exceptions raised in the block propagate after the finish snapshot.

    ``TraceMalloc.TRACE_ON = False`` (a class attribute, read on entry) makes
    every block untraced: tracemalloc is not touched, ``statistics`` and
    ``net_statistics`` are empty and ``diff`` is ``DIFF_WHEN_OFF``.
    """

    #: Set to False to switch every TraceMalloc off (read as each block starts).
    TRACE_ON = True
    #: The original pymemtrace's name for :data:`ALLOWED_GRANULARITIES`.
    ALLOWED_GRANULARITY = ALLOWED_GRANULARITIES

    def __init__(self, statistics_granularity: str = "lineno") -> None:
        if not isinstance(statistics_granularity, str):
            raise TypeError(
                "statistics_granularity must be a str, one of "
                f"{', '.join(repr(g) for g in ALLOWED_GRANULARITIES)}, "
                f"not {type(statistics_granularity).__name__}")
        if statistics_granularity not in ALLOWED_GRANULARITIES:
            raise ValueError(
                f"statistics_granularity must be one of "
                f"{', '.join(repr(g) for g in ALLOWED_GRANULARITIES)}, "
                f"not {statistics_granularity!r}")
        self.statistics_granularity = statistics_granularity
        self._state = "new"           # new -> active -> finished
        self._started_tracing = False
        self._snapshot_start: typing.Optional[tracemalloc.Snapshot] = None
        self._snapshot_finish: typing.Optional[tracemalloc.Snapshot] = None
        self._memory_start: typing.Optional[int] = None
        self._memory_finish: typing.Optional[int] = None
        self._statistics: typing.List[tracemalloc.StatisticDiff] = []
        self._net_statistics = StatisticList()
        self._diff: typing.Optional[int] = None
        self._traced = True

    # ---- the context manager -------------------------------------------------
    def __enter__(self) -> "TraceMalloc":
        if self._state == "active":
            raise RuntimeError("this TraceMalloc is already active; use a new one to nest")
        self._state = "active"
        self._snapshot_finish = None
        self._statistics = []
        self._net_statistics = StatisticList()
        self._diff = None
        self._memory_finish = None
        self._traced = bool(type(self).TRACE_ON)
        if not self._traced:
            self._started_tracing = False
            self._snapshot_start = None
            self._memory_start = None
            return self
        self._started_tracing = not tracemalloc.is_tracing()
        if self._started_tracing:
            tracemalloc.start(_TRACEBACK_FRAMES if self.statistics_granularity == "traceback" else 1)
        self._snapshot_start = tracemalloc.take_snapshot()
        self._memory_start = tracemalloc.get_tracemalloc_memory()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb) -> bool:
        if self._state != "active":
            raise RuntimeError("TraceMalloc.__exit__() called without __enter__()")
        if not self._traced:
            self._state = "finished"
            self._diff = DIFF_WHEN_OFF
            return False
        try:
            self._memory_finish = tracemalloc.get_tracemalloc_memory()
            self._snapshot_finish = tracemalloc.take_snapshot()
        finally:
            if self._started_tracing:
                tracemalloc.stop()
                self._started_tracing = False
            self._state = "finished"
        start, finish = self._snapshot_start, self._snapshot_finish
        key = self.statistics_granularity
        self._statistics = finish.compare_to(start, key)
        filters = _machinery_filters()
        self._net_statistics = StatisticList(finish.filter_traces(filters).compare_to(
            start.filter_traces(filters), key))
        self._diff = sum(stat.size_diff for stat in self._net_statistics)
        return False

    # ---- results ---------------------------------------------------------------
    def _require(self, what: str, finished: bool = True) -> None:
        if self._state == "new":
            raise RuntimeError(f"TraceMalloc.{what} is only available after the with block has started")
        if finished and self._state != "finished":
            raise RuntimeError(f"TraceMalloc.{what} is only available after the with block has ended")

    @property
    def memory_start(self) -> int:
        """tracemalloc's own memory (bytes) when the block started."""
        self._require("memory_start", finished=False)
        return self._memory_start

    @property
    def memory_finish(self) -> int:
        """tracemalloc's own memory (bytes) when the block finished."""
        self._require("memory_finish")
        return self._memory_finish

    @property
    def tracemalloc_memory_usage(self) -> typing.Optional[int]:
        """Growth of tracemalloc's own memory during the block (bytes); None
        if the block was not traced (``TRACE_ON`` False)."""
        self._require("tracemalloc_memory_usage")
        if not self._traced:
            return None
        return self._memory_finish - self._memory_start

    @property
    def diff(self) -> int:
        """Net traced bytes allocated by the block, without the machinery's own."""
        self._require("diff")
        return self._diff

    @property
    def statistics(self) -> typing.List[tracemalloc.StatisticDiff]:
        """tracemalloc's comparison of the two snapshots, every line."""
        self._require("statistics")
        return self._statistics

    @property
    def net_statistics(self) -> StatisticList:
        """The comparison without tracemalloc's and pymemtrace's own lines
        (a list; calling it, as the original pymemtrace does, returns it)."""
        self._require("net_statistics")
        return self._net_statistics

    @property
    def snapshot_start(self) -> tracemalloc.Snapshot:
        """The tracemalloc snapshot taken as the block started."""
        self._require("snapshot_start", finished=False)
        return self._snapshot_start

    @property
    def snapshot_finish(self) -> tracemalloc.Snapshot:
        """The tracemalloc snapshot taken as the block ended."""
        self._require("snapshot_finish")
        return self._snapshot_finish

    # The original pymemtrace's names for the two snapshots.
    tracemalloc_snapshot_start = snapshot_start
    tracemalloc_snapshot_finish = snapshot_finish

    def __repr__(self) -> str:
        if self._state == "finished" and not self._traced:
            return f"<TraceMalloc {self.statistics_granularity!r} off (TRACE_ON is False)>"
        if self._state == "finished":
            return (f"<TraceMalloc {self.statistics_granularity!r} diff={self._diff:,d} "
                    f"tracemalloc_memory_usage={self.tracemalloc_memory_usage:,d}>")
        return f"<TraceMalloc {self.statistics_granularity!r} {self._state}>"


def _check_log_level(log_level) -> int:
    if isinstance(log_level, bool) or not isinstance(log_level, (int, str)):
        raise TypeError(f"log_level must be an int logging level such as logging.INFO, "
                        f"not {type(log_level).__name__}")
    if isinstance(log_level, str):
        level = logging.getLevelName(log_level.upper())
        if not isinstance(level, int):
            raise ValueError(f"log_level {log_level!r} is not a logging level name "
                             f"(DEBUG, INFO, WARNING, ERROR, CRITICAL)")
        return level
    if log_level < 0:
        raise ValueError(f"log_level must be >= 0, not {log_level}")
    return log_level


def trace_malloc_log(log_level: typing.Union[int, str]) -> typing.Callable:
    """Decorator: log the net memory a call allocated, as seen by tracemalloc.

    Logs ``TraceMalloc memory delta: 8,389,548 for "fn()"`` at *log_level* on
    the ``pymemtrace.trace_malloc`` logger after every call, including calls
    that raise (the exception then propagates).  With
    ``TraceMalloc.TRACE_ON`` False the call runs untraced and nothing is logged.
    """
    level = _check_log_level(log_level)

    def decorator(fn):
        if not callable(fn):
            raise TypeError(f"trace_malloc_log() decorates a callable, not {type(fn).__name__}")

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not TraceMalloc.TRACE_ON:
                return fn(*args, **kwargs)
            tm = TraceMalloc("filename")
            try:
                with tm:
                    return fn(*args, **kwargs)
            finally:
                if tm._state == "finished":
                    logger.log(level, 'TraceMalloc memory delta: %s for "%s()"',
                               f"{tm.diff:,d}", fn.__name__)
        return wrapper
    return decorator
