"""Log a process's memory and CPU use at regular intervals, sampled in C.

:func:`log_process` is a context manager (and a decorator) that samples a
process -- by default this one -- every *interval* seconds on a C thread that
never holds the GIL while it samples, and logs each sample as one JSON
record through :mod:`logging`::

    ProcessLoggingThread-JSON-START {"timestamp": "...", "memory_info": {...}, ...}
    ProcessLoggingThread-JSON {"timestamp": "...", ...}
    ProcessLoggingThread-JSON-STOP {"timestamp": "...", ...}

The JSON object has the keys:

``timestamp``
    Local time the sample was taken, ``YYYY-MM-DD HH:MM:SS.ffffff``.  The
    :class:`logging.LogRecord` of a sample is also dated at that time
    (``record.created``), not at the time it reached the handler.
``memory_info``
    ``rss`` and ``vms`` (bytes); ``pfaults`` is the count of page faults,
    which on Linux is minor plus major faults; ``pageins`` is the count of
    major faults (faults that read a page from disk or swap).  Also, on
    Linux, ``shared``, ``text`` and ``data`` (bytes, as in
    ``/proc/PID/statm``); with ``status=True`` ``rss_peak`` (the kernel's
    high-water mark) and ``swap``; with ``smaps=True`` ``pss`` and ``uss``
    (proportional and unique set size, from ``/proc/PID/smaps_rollup``).
``cpu_times``
    ``user``, ``system``, ``children_user``, ``children_system`` in
    seconds (Linux counts them in clock ticks, usually 1/100 s).
``elapsed_time``
    Seconds since the process started.
``pid``, ``num_threads``
    The process sampled and how many threads it has (sampling this process
    adds pymemtrace's own: two in logging mode, one with ``output=``).
``label``
    Present when :func:`add_message_to_queue` queued a message: the next
    sample carries it (the oldest message first, one per sample).

The STOP record also has the peaks, which sampling alone can miss (a peak
shorter than *interval* falls between two samples):

``rss_max_sampled``
    The highest RSS of the samples taken.
``rss_peak_kernel``, ``rss_peak_source``
    The kernel's own high-water mark of the RSS, whatever the interval, and
    where it comes from: ``"VmHWM"`` (``/proc/PID/status`` read at STOP) or,
    for another process that has exited by then, ``"VmHWM at the last
    sample"``.  With *children* it is the sampled process's own.

Sampling and logging are decoupled: the sampler thread keeps its schedule
even while Python code holds the GIL, and a second C thread hands the samples
to :mod:`logging` in batches (at most *latency* seconds old, 0.1 s by
default), one log record per sample, in order.  When samples come faster
than *latency* (interval < latency) a batch is logged by the main thread at
its next opportunity (``Py_AddPendingCall``), which costs a CPU-bound
program only the logging calls; the delivery thread logs it itself if the
main thread does not within 20 ms (it sleeps or waits in C), and always
when interval >= latency, so that a slow handler's I/O stays off the main
thread.  With ``output=PATH`` the
records are written by C as JSON lines straight to a file and the GIL is
never taken at all; that is also what ``pymemtrace process`` writes.

The original pymemtrace's names are here too (from
:mod:`pymemtrace.process_original`): :func:`log_process_dec`,
:class:`ProcessLoggingThread`, :func:`add_process_logger_to_argument_parser`,
the log readers :data:`RE_LOG_LINE`, :func:`extract_json`,
:func:`extract_json_as_table`, :func:`extract_labels_from_json`,
:func:`write_log_to_stdout`, :func:`invoke_gnuplot`, and its command line,
``python -m pymemtrace.process [-i S] [-p PID] [-l LEVEL] [PATH_IN [PATH_OUT]]``.

Threads: the sampler measures the whole process (all threads).  Records
sampled by the C thread are logged with the thread name ``ProcMon``; the
STOP record comes from the thread that leaves the ``with`` block.  Several
:func:`log_process` contexts may be active at once; each samples on its own.
"""
from __future__ import annotations

import atexit
import errno
import functools
import logging
import math
import os
import threading
from typing import Any, Callable, List, Optional, Tuple, TypeVar, Union

from pymemtrace import _process

__all__ = ["log_process", "add_message_to_queue", "MAX_INTERVAL",
           # the original pymemtrace's names (pymemtrace/process_original.py)
           "log_process_dec", "ProcessLoggingThread", "add_process_logger_to_argument_parser",
           "RE_LOG_LINE", "extract_json", "extract_json_as_table", "extract_labels_from_json",
           "write_log_to_stdout", "invoke_gnuplot"]

#: The longest interval accepted, in seconds (one day).
MAX_INTERVAL = 86400.0
#: The shortest interval accepted, in seconds (100 microseconds).
MIN_INTERVAL = 1e-4

PREFIX = "ProcessLoggingThread-JSON"
_PREFIXES = {
    _process.KIND_SAMPLE: PREFIX + " ",
    _process.KIND_START: PREFIX + "-START ",
    _process.KIND_STOP: PREFIX + "-STOP ",
}
_THREAD_NAME = "ProcMon"

logger = logging.getLogger(__name__)

# Samplers still running, stopped at interpreter exit (before finalization,
# so their delivery threads never race the interpreter's teardown).  Strong
# references: a context entered and forgotten still ends its log properly.
_running: "set[log_process]" = set()

F = TypeVar("F", bound=Callable[..., Any])


def add_message_to_queue(message: str) -> None:
    """Queue *message* as the ``label`` of the next sample.

    Messages are process-wide: the next sample taken by any running
    :func:`log_process` carries the oldest waiting message (one per sample);
    a message queued while none runs waits for the next one to start.
    """
    if not isinstance(message, str):
        raise TypeError(f"message must be str, not {type(message).__name__}")
    _process.add_message(message)


def _check_interval(interval: Any) -> float:
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        raise TypeError(f"interval must be a number of seconds, not {type(interval).__name__}")
    value = float(interval)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"interval must be > 0 seconds, not {interval!r}")
    if value < MIN_INTERVAL:
        raise ValueError(f"interval must be at least {MIN_INTERVAL} seconds, not {interval!r}")
    if value > MAX_INTERVAL:
        raise ValueError(f"interval must be at most {MAX_INTERVAL:.0f} seconds (one day), not {interval!r}")
    return value


def _check_pid(pid: Any) -> int:
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    if pid == -1 or pid == 0:
        return os.getpid()
    if pid < 0:
        raise ValueError(f"pid must be a process id or -1 for this process, not {pid}")
    return pid


def _check_level(level: Any) -> int:
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"log_level must be an int such as logging.INFO, not {type(level).__name__}")
    return level


def open_sampler(pid: int, interval: float, **kwargs: Any) -> "_process.Sampler":
    """A :class:`_process.Sampler` for *pid*, with errors that name the pid."""
    try:
        return _process.Sampler(pid, interval, **kwargs)
    except ProcessLookupError:
        raise ValueError(f"pid {pid}: no such process") from None
    except PermissionError:
        raise PermissionError(errno.EACCES, f"pid {pid}: permission denied reading /proc/{pid}") from None


_LOG_START = logging._startTime  # type: ignore[attr-defined]
if _LOG_START > 1e15:           # 3.13 keeps it in nanoseconds
    _LOG_START = _LOG_START / 1e9


def _record_time_fields(created: float) -> Tuple[float, float]:
    """(msecs, relativeCreated) of a record created at *created*."""
    return float(int((created - int(created)) * 1000.0)), (created - _LOG_START) * 1000.0


class log_process:
    """Log process data every *interval* seconds while a block or function runs.

    Use as ``with log_process(interval=0.5): ...`` or as a decorator,
    ``@log_process(interval=0.5)``.  *pid* -1 means this process.  Records
    go to *logger* (default ``logging.getLogger('pymemtrace.process')``) at
    *log_level*; with *output* (a path) they are written by C as JSON lines
    to that file instead, and *log_level* is unused.

    Optional extras: *status* adds ``rss_peak`` and ``swap``, *smaps* adds
    ``pss`` and ``uss`` (needs permission to read the process's memory map,
    as its owner or root), *children* sums the process and its descendants
    (adding ``nprocs``).  *latency* bounds how old a sample can be when it
    reaches :mod:`logging` (or, with *output*, the file).

    If a sampled process other than this one exits, sampling ends, a warning
    is logged and the STOP record carries ``"error"``.
    """

    def __init__(
        self,
        interval: float = 1.0,
        log_level: int = logging.INFO,
        pid: int = -1,
        *,
        output: Optional[Union[str, "os.PathLike[str]"]] = None,
        logger: Optional[logging.Logger] = None,
        status: bool = False,
        smaps: bool = False,
        children: bool = False,
        latency: float = 0.1,
    ) -> None:
        self.interval = _check_interval(interval)
        self.log_level = _check_level(log_level)
        self.pid = _check_pid(pid)
        if logger is not None and not isinstance(logger, logging.Logger):
            raise TypeError(f"logger must be a logging.Logger, not {type(logger).__name__}")
        if not isinstance(latency, (int, float)) or isinstance(latency, bool) or not latency > 0:
            raise ValueError(f"latency must be > 0 seconds, not {latency!r}")
        self.output = os.fspath(output) if output is not None else None
        self.logger = logger if logger is not None else globals()["logger"]
        self.status = bool(status)
        self.smaps = bool(smaps)
        self.children = bool(children)
        self.latency = float(latency)
        self._sampler: Optional[_process.Sampler] = None
        self._owner = 0
        self._stopping = False
        self._lock = threading.Lock()
        #: Counters of the last run: samples taken, dropped (ring full),
        #: missed (ticks skipped while the machine was too busy).
        self.stats: dict = {}

    # -- context manager -------------------------------------------------
    def __enter__(self) -> "log_process":
        with self._lock:
            if self._sampler is not None:
                raise RuntimeError("log_process is already running; use a new one (or the decorator)")
            # Batches of many samples are logged by the main thread (no GIL
            # hand-over per handler I/O); one sample at a time (interval >=
            # latency) by the delivery thread, so a slow handler's I/O never
            # runs in the main thread.
            # another process may be gone at STOP: follow its kernel peak
            kwargs = dict(children=self.children, status=self.status, smaps=self.smaps,
                          latency=self.latency, via_main=self.interval < self.latency,
                          hwm=self.pid != os.getpid())
            if self.output is not None:
                kwargs["path"] = self.output
            else:
                kwargs["callback"] = self._deliver
            sampler = open_sampler(self.pid, self.interval, **kwargs)
            self._sampler = sampler
            self._owner = os.getpid()
            sampler.start()
            _running.add(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop sampling and log (or write) the STOP record.  Idempotent."""
        with self._lock:
            sampler = self._sampler
            if sampler is None or self._stopping:
                return      # stopped, or being stopped (maybe by this thread)
            self._stopping = True
        try:
            # raises RuntimeError (and keeps running) if called by a handler
            # while it logs this sampler's own records
            sampler.stop()
        except BaseException:
            with self._lock:
                self._stopping = False
            raise
        with self._lock:
            self._sampler = None
            self._stopping = False
        _running.discard(self)
        self.stats = sampler.stats()
        if self._owner != os.getpid():
            # a forked child leaving its parent's context: the log is the parent's
            if self.output is not None:
                sampler.close()     # releases the descriptor, writes nothing
            return
        ended_by = self.stats.get("errno", 0)
        if ended_by and ended_by != errno.ESRCH:
            self.logger.warning("pymemtrace.process: sampling pid %d stopped: %s",
                                self.pid, os.strerror(ended_by))
        if self.stats.get("dropped"):
            self.logger.warning("pymemtrace.process: %d samples dropped (logging was "
                                "blocked for too long)", self.stats["dropped"])
        created, text, gone = sampler.stop_record(event="stop" if self.output else None)
        if gone and not self.output:
            self.logger.warning("pymemtrace.process: process %d exited", self.pid)
        if self.output is not None:
            sampler.write_line(text)
            try:
                sampler.close()
            except OSError as err:
                raise OSError(err.errno, f"writing {self.output}: {err.strerror}") from None
        else:
            self._emit(((created, _process.KIND_STOP, text),), threading.current_thread().name)

    def add_message_to_queue(self, message: str) -> None:
        """Queue *message* as the label of the next sample (the original
        pymemtrace's method on the context's value; see the module function)."""
        add_message_to_queue(message)

    # -- decorator ---------------------------------------------------------
    def _recreate(self) -> "log_process":
        return log_process(self.interval, self.log_level, self.pid, output=self.output,
                           logger=self.logger, status=self.status, smaps=self.smaps,
                           children=self.children, latency=self.latency)

    def __call__(self, func: F) -> F:
        if not callable(func):
            raise TypeError(f"log_process decorates a callable, not {type(func).__name__}")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._recreate():
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    # -- delivery ------------------------------------------------------------
    def _deliver(self, records: List[Tuple[float, int, str]]) -> None:
        """Called by the C delivery thread (with the GIL) with a batch."""
        self._emit(records, _THREAD_NAME)

    def _emit(self, records, thread_name: str) -> None:
        """One LogRecord per sample, dated when it was sampled.

        With the standard record factory and Logger.makeRecord, records are
        made by copying the attributes of one record made per batch (the
        static ones: logger, level, file, process, ...) and setting the
        message and times: a third of the cost of makeRecord per sample.
        """
        log = self.logger
        level = self.log_level
        if not log.isEnabledFor(level):
            return
        handle = log.handle
        template = log.makeRecord(log.name, level, __file__, _EMIT_LINE, "", None, None, "log_process")
        template.threadName = thread_name
        if logging.getLogRecordFactory() is logging.LogRecord and \
                type(log).makeRecord is logging.Logger.makeRecord:
            static = template.__dict__
            new = logging.LogRecord.__new__
            cls = logging.LogRecord
            for created, kind, text in records:
                rec = new(cls)
                d = static.copy()
                d["msg"] = _PREFIXES[kind] + text
                d["created"] = created
                d["msecs"], d["relativeCreated"] = _record_time_fields(created)
                rec.__dict__ = d
                handle(rec)
        else:
            make, name = log.makeRecord, log.name
            for created, kind, text in records:
                rec = make(name, level, __file__, _EMIT_LINE, _PREFIXES[kind] + text, None, None, "log_process")
                rec.created = created
                rec.msecs, rec.relativeCreated = _record_time_fields(created)
                rec.threadName = thread_name
                handle(rec)


_EMIT_LINE = log_process._emit.__code__.co_firstlineno


@atexit.register
def _stop_all() -> None:
    for lp in list(_running):
        try:
            lp.stop()
        except Exception:   # never break interpreter exit
            pass


from pymemtrace.process_original import (  # noqa: E402  (they use log_process)
    DATETIME_NOW_FORMAT, GNUPLOT_PLT, KEY_ELAPSED_TIME, KEY_LABEL, KEY_PROCESS_ID, KEY_TIMESTAMP,
    LOGGER_PREFIX, LOGGER_PREFIX_START, LOGGER_PREFIX_STOP, RE_LOG_LINE, ProcessLoggingThread,
    add_process_logger_to_argument_parser, extract_json, extract_json_as_table,
    extract_labels_from_json, invoke_gnuplot, log_process_dec, parse_timestamp, write_log_to_stdout)


if __name__ == "__main__":
    import sys

    from pymemtrace import process_original
    sys.exit(process_original.main())
