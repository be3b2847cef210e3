"""The original pymemtrace's process API, as thin skins over :mod:`pymemtrace.process`.

Everything here is re-exported by :mod:`pymemtrace.process`; import it from
there.  Sampling stays in C (:class:`pymemtrace.process.log_process`); these
are the names the original's users call:

* :func:`log_process_dec`, :class:`ProcessLoggingThread` and
  :func:`add_process_logger_to_argument_parser` (``--log-process SECONDS``);
* the log readers :data:`RE_LOG_LINE`, :func:`extract_json`,
  :func:`extract_labels_from_json`, :func:`extract_json_as_table`,
  :func:`write_log_to_stdout` and :func:`invoke_gnuplot`, which read the
  logging lines ``log_process`` writes (and the JSON lines of
  ``log_process(output=...)`` / ``pymemtrace process``);
* :func:`main`, the command line of ``python -m pymemtrace.process``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import re
import sys
import threading
import typing
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

__all__ = ["LOGGER_PREFIX", "LOGGER_PREFIX_START", "LOGGER_PREFIX_STOP", "RE_LOG_LINE",
           "DATETIME_NOW_FORMAT", "KEY_TIMESTAMP", "KEY_ELAPSED_TIME", "KEY_LABEL",
           "KEY_PROCESS_ID", "GNUPLOT_PLT", "parse_timestamp", "extract_json",
           "extract_labels_from_json", "extract_json_as_table", "write_log_to_stdout",
           "invoke_gnuplot", "log_process_dec", "ProcessLoggingThread",
           "add_process_logger_to_argument_parser", "main"]

logger = logging.getLogger("pymemtrace.process")

LOGGER_PREFIX = "ProcessLoggingThread-JSON"
LOGGER_PREFIX_START = LOGGER_PREFIX + "-START"
LOGGER_PREFIX_STOP = LOGGER_PREFIX + "-STOP"
#: A log line holding a record: group 1 is ``-START``, ``-STOP`` or None,
#: group 2 the JSON object.  Anything may come before the prefix (the
#: logging format's date, level, file...).
RE_LOG_LINE = re.compile(r"^.*?" + LOGGER_PREFIX + r"(-START|-STOP)?\s*(\{.*\})\s*$")
#: How ``timestamp`` is written: ``2019-06-07 11:57:58.390921``.
DATETIME_NOW_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
KEY_TIMESTAMP = "timestamp"
KEY_ELAPSED_TIME = "elapsed_time"
KEY_LABEL = "label"
KEY_PROCESS_ID = "pid"

Record = Dict[str, Any]


def parse_timestamp(s: str) -> datetime.datetime:
    """The datetime of a ``timestamp`` such as ``'2019-06-07 11:57:58.390921'``."""
    if not isinstance(s, str):
        raise TypeError(f"timestamp must be str, not {type(s).__name__}")
    for fmt in (DATETIME_NOW_FORMAT, "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.datetime.strptime(s, fmt)
        except ValueError:
            pass
    raise ValueError(f"timestamp {s[:40]!r} is not YYYY-MM-DD HH:MM:SS[.ffffff]")


def _json_of(line: str) -> Optional[str]:
    """The JSON text of a record line, or None if the line holds no record."""
    m = RE_LOG_LINE.match(line)
    if m is not None:
        return m.group(2)
    s = line.strip()
    if s.startswith("{") and '"' + KEY_TIMESTAMP + '"' in s:
        return s            # a JSON line (output=..., pymemtrace process)
    return None


def extract_json(istream: TextIO) -> List[Record]:
    """The records of a process log, in order, as dicts (``timestamp`` a datetime).

    *istream* is a text stream of a log: lines of any logging format with
    ``ProcessLoggingThread-JSON[-START|-STOP] {...}`` in them, or the JSON
    lines ``log_process(output=...)`` writes.  Other lines are ignored; a
    truncated last record (the program died mid-write) is dropped.  Raises
    ValueError naming the line of a malformed record before the last, and
    if the stream holds no record at all (it is not a process log).
    """
    if not hasattr(istream, "readline"):
        raise TypeError(f"extract_json reads a text stream (an open log file), "
                        f"not {type(istream).__name__}")
    records: List[Record] = []
    pending: Optional[Tuple[int, str]] = None   # a bad record, an error unless it is the last line
    seen = 0
    for no, line in enumerate(istream, 1):
        if isinstance(line, bytes):
            raise TypeError("extract_json reads a text stream: open the log with open(path) not open(path, 'rb')")
        seen = no
        text = _json_of(line)
        if text is None:
            continue
        if pending is not None:
            raise ValueError(f"line {pending[0]}: malformed process record: {pending[1]}")
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if KEY_TIMESTAMP in data:
                data[KEY_TIMESTAMP] = parse_timestamp(data[KEY_TIMESTAMP])
        except (ValueError, TypeError) as err:
            pending = (no, str(err).split(":")[0] if isinstance(err, json.JSONDecodeError) else str(err))
            continue
        records.append(data)
    if pending is not None and pending[0] != seen:
        raise ValueError(f"line {pending[0]}: malformed process record: {pending[1]}")
    if not records:
        raise ValueError(f"no process records (not a process log: no '{LOGGER_PREFIX} {{...}}' "
                         f"lines, no JSON lines with a timestamp)")
    return records


def extract_labels_from_json(json_data: List[Record]) -> List[Record]:
    """The records of *json_data* that carry a ``label``."""
    _check_records(json_data, "extract_labels_from_json")
    return [r for r in json_data if KEY_LABEL in r]


def _check_records(json_data: Any, who: str) -> None:
    if isinstance(json_data, (str, bytes)) or not isinstance(json_data, (list, tuple)):
        raise TypeError(f"{who} takes the list of dicts extract_json returns, not {type(json_data).__name__}")
    for i, r in enumerate(json_data):
        if not isinstance(r, dict):
            raise TypeError(f"{who}: record {i} is a {type(r).__name__}, not a dict")


_HEADER = ["#t(s)".ljust(12), "RSS".rjust(12), "PageFaults/s".rjust(12), "User".rjust(12),
           "Mean_CPU%".rjust(12), "Inst_CPU%".rjust(12), "Timestamp".ljust(26), "PID".rjust(6), "Label"]


def _rate(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def _sample_fields(r: Record, i: int) -> Tuple[int, float, float, int, float]:
    """(pid, elapsed, user cpu, pfaults, rss) of a record, or KeyError/TypeError."""
    mi, ct = r["memory_info"], r["cpu_times"]
    pid, t = r[KEY_PROCESS_ID], float(r[KEY_ELAPSED_TIME])
    if not isinstance(pid, int) or not isinstance(mi, dict) or not isinstance(ct, dict):
        raise TypeError(f"record {i}: pid, memory_info or cpu_times has the wrong type")
    return pid, t, float(ct["user"]), int(mi["pfaults"]), int(mi["rss"])


def extract_json_as_table(json_data: List[Record]) -> Tuple[
        Dict[int, List[List[str]]], Dict[int, float], Dict[int, float], Dict[int, float], Dict[int, float]]:
    """Tabulate the records of :func:`extract_json`, per process, for gnuplot.

    Returns ``(table, t_min, t_max, rss_min, rss_max)``, each a dict keyed by
    pid.  ``table[pid]`` is a header row and one row of strings per sample:
    elapsed seconds, RSS, page faults per second since the previous sample,
    user CPU seconds, mean and instantaneous CPU use (user time over elapsed
    time), timestamp, pid and ``# label``.  Records without memory data (a
    STOP note for a process that had exited) are left out.
    """
    _check_records(json_data, "extract_json_as_table")
    table: Dict[int, List[List[str]]] = {}
    t_min: Dict[int, float] = {}
    t_max: Dict[int, float] = {}
    rss_min: Dict[int, float] = {}
    rss_max: Dict[int, float] = {}
    prev: Dict[int, Tuple[float, float, int]] = {}
    for i, r in enumerate(json_data):
        if not isinstance(r.get("memory_info"), dict):
            continue
        try:
            pid, t, user, faults, rss = _sample_fields(r, i)
        except KeyError as err:
            raise ValueError(f"extract_json_as_table: record {i} has no {err.args[0]!r}") from None
        except (TypeError, ValueError) as err:
            raise ValueError(f"extract_json_as_table: record {i}: {err}") from None
        if pid not in table:
            table[pid] = [list(_HEADER)]
            prev[pid] = (0.0, 0.0, 0)
            t_min[pid], t_max[pid], rss_min[pid], rss_max[pid] = t, t, rss, rss
        t0, user0, faults0 = prev[pid]
        ts = r.get(KEY_TIMESTAMP)
        stamp = ts.strftime("%Y-%m-%dT%H:%M:%S.%f") if isinstance(ts, datetime.datetime) else str(ts)
        table[pid].append([
            f"{t:<12.1f}", f"{rss:12d}", f"{_rate(faults - faults0, t - t0):12.1f}", f"{user:12.1f}",
            f"{_rate(user, t):12.1%}", f"{_rate(user - user0, t - t0):12.1%}", f"{stamp:26}",
            f"{pid:6d}", f"# {r.get(KEY_LABEL, '')}",
        ])
        prev[pid] = (t, user, faults)
        t_min[pid], t_max[pid] = min(t_min[pid], t), max(t_max[pid], t)
        rss_min[pid], rss_max[pid] = min(rss_min[pid], rss), max(rss_max[pid], rss)
    return table, t_min, t_max, rss_min, rss_max


def _read_log_path(log_path: Any) -> List[Record]:
    from pymemtrace.util.logfile import open_log
    with open_log(log_path, "process log") as f:
        try:
            return extract_json(f)
        except ValueError as err:
            raise ValueError(f"{os.fspath(log_path)}: {err}") from None


def write_log_to_stdout(log_path: str) -> None:
    """Print the table of :func:`extract_json_as_table` for the log at *log_path*."""
    table = extract_json_as_table(_read_log_path(log_path))[0]
    for pid, rows in table.items():
        print(f" PID: {pid} ".center(75, "-"))
        for row in rows:
            print(" ".join(row))
        print(f" PID: {pid} DONE ".center(75, "-"))


#: The gnuplot script of :func:`invoke_gnuplot`: ``str.format`` with
#: ``name`` (of the ``.dat`` file, without extension), ``extension`` (the
#: terminal and image type, e.g. ``png``) and ``labels`` (gnuplot lines).
GNUPLOT_PLT = """set title "Memory and CPU use" font ",14"
set grid
set xlabel "Elapsed time (s)"
set ylabel "RSS (MB)"
set y2label "CPU (%), page faults (10,000/s)"
set y2tics
set datafile missing "nan"
set terminal {extension} size 1000,700
set output "{name}.{extension}"
{labels}
plot "{name}.dat" using 1:($2 / 1048576) axes x1y1 title "RSS (MB), left axis" with lines lw 2, \\
    "{name}.dat" using 1:($3 / 10000) axes x1y2 title "Page faults (10,000/s), right axis" with lines lw 1, \\
    "{name}.dat" using 1:(100 * $5) axes x1y2 title "Mean CPU (%), right axis" with lines lw 1, \\
    "{name}.dat" using 1:(100 * $6) axes x1y2 title "Instantaneous CPU (%), right axis" with lines lw 1
"""


def _gnuplot_rows(rows: List[List[str]]) -> List[List[str]]:
    """The table's rows as gnuplot reads them: CPU as fractions (no %)."""
    out = [rows[0]]
    for row in rows[1:]:
        row = list(row)
        for c in (4, 5):
            v = row[c].strip().rstrip("%")
            row[c] = f"{float(v) / 100:.4f}" if v not in ("nan", "") else "nan"
        row[-1] = "#" + row[-1][1:].replace("\n", " ")
        out.append(row)
    return out


def _label_lines(records: List[Record], y: float) -> List[str]:
    lines = []
    for r in records:
        t = r.get(KEY_ELAPSED_TIME)
        if not isinstance(t, (int, float)):
            continue
        text = str(r[KEY_LABEL]).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f"set arrow from {t},{y} to {t},0 lt -1 lw 1")
        lines.append(f'set label "{text}" at {t},{y * 1.025} left font ",10" rotate by 90 noenhanced front')
    return lines


def invoke_gnuplot(log_path: str, gnuplot_dir: str) -> int:
    """Plot the log at *log_path* with gnuplot into *gnuplot_dir* (created).

    For each pid writes ``LOGNAME_PID.dat`` and ``LOGNAME_PID.plt`` and runs
    gnuplot to draw ``LOGNAME_PID.png`` (labels as arrows).  Returns
    gnuplot's exit code: 0 on success, -1 if gnuplot is not installed (the
    data and script are written all the same).
    """
    from pymemtrace.util import gnuplot
    records = _read_log_path(log_path)
    if not isinstance(gnuplot_dir, (str, os.PathLike)):
        raise TypeError(f"gnuplot_dir must be a path, not {type(gnuplot_dir).__name__}")
    gnuplot_dir = os.fspath(gnuplot_dir)
    table, _t_min, _t_max, rss_min, rss_max = extract_json_as_table(records)
    if not table:
        raise ValueError(f"{log_path}: its process records hold no memory samples to plot")
    os.makedirs(gnuplot_dir, exist_ok=True)
    ret = 0
    for pid, rows in table.items():
        name = f"{os.path.basename(log_path)}_{pid}"
        y = max(rss_max[pid] - rss_min[pid], 1) * 0.5 / 1024 ** 2
        labels = [r for r in extract_labels_from_json(records) if r.get(KEY_PROCESS_ID) == pid]
        ret = gnuplot.invoke_gnuplot(gnuplot_dir, name, _gnuplot_rows(rows), GNUPLOT_PLT.format(
            name=name, extension="png", labels="\n".join(_label_lines(labels, y))))
        if ret:
            break
    return ret


# ---- decorator, thread, argparse -------------------------------------------------

def log_process_dec(*dec_args: Any, **dec_kwargs: Any) -> Callable:
    """A decorator: the function runs inside ``log_process(*dec_args, **dec_kwargs)``.

    ``@log_process_dec(interval=0.5, log_level=logging.INFO)``; the
    arguments are checked here, when decorating.  ``@log_process_dec``
    without a call samples with the defaults.
    """
    from pymemtrace.process import log_process
    if len(dec_args) == 1 and not dec_kwargs and callable(dec_args[0]) \
            and not isinstance(dec_args[0], (int, float)):
        return log_process()(dec_args[0])
    return log_process(*dec_args, **dec_kwargs)


class ProcessLoggingThread(threading.Thread):
    """The original's sampling thread, over the C sampler of ``log_process``.

    ``t = ProcessLoggingThread(interval=0.5); t.start(); ...; t.join()``
    logs the START record at ``start()``, samples every *interval* seconds
    and logs the STOP record at ``join()``, as ``log_process`` does (which
    is the better way: a ``with`` block always ends the log).  The Python
    thread itself only waits for ``join()``; sampling is C.
    """

    def __init__(self, group: None = None, target: Optional[Callable] = None, name: Optional[str] = None,
                 daemon: Optional[bool] = None, interval: float = 1.0, log_level: int = logging.INFO,
                 pid: int = -1) -> None:
        from pymemtrace.process import log_process
        if target is not None:
            raise TypeError("ProcessLoggingThread runs no target: it samples the process")
        # a daemon unless asked otherwise: a thread never joined must not
        # hold up interpreter exit (its log is ended at exit all the same)
        super().__init__(group=group, name="ProcMon" if name is None else name,
                         daemon=True if daemon is None else daemon)
        self._log = log_process(interval, log_level, pid)   # checks the arguments
        self._done = threading.Event()

    @property
    def interval(self) -> float:
        return self._log.interval

    def start(self) -> None:
        self._log.__enter__()
        try:
            super().start()
        except BaseException:
            self._log.stop()
            raise

    def run(self) -> None:
        self._done.wait()

    def add_message_to_queue(self, msg: str) -> None:
        """Queue *msg* as the ``label`` of the next sample."""
        self._log.add_message_to_queue(msg)

    def join(self, timeout: Optional[float] = None) -> None:
        """Log the STOP record, end sampling, and join the thread."""
        self._log.stop()
        self._done.set()
        super().join(timeout)


def _log_process_seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds (0 logs nothing), not {text}")
    return v


def add_process_logger_to_argument_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``--log-process SECONDS`` to *parser* (``args.log_process``, default 0.0).

    A program then wraps its work in ``log_process(interval=args.log_process)``
    when ``args.log_process > 0``.
    """
    if not isinstance(parser, argparse.ArgumentParser):
        raise TypeError(f"parser must be an argparse.ArgumentParser, not {type(parser).__name__}")
    parser.add_argument("--log-process", default=0.0, type=_log_process_seconds, metavar="SECONDS",
                        help="log process data (memory, CPU) as a log line every SECONDS seconds; "
                             "0 logs nothing [default: %(default)s]")


# ---- python -m pymemtrace.process ----------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    """``python -m pymemtrace.process``: log a process, or tabulate or plot a log."""
    from pymemtrace.process import log_process
    parser = argparse.ArgumentParser(
        prog="python -m pymemtrace.process",
        description="Without PATH_IN: log this process (or --pid PID) every INTERVAL seconds "
                    "until Ctrl-C (or until PID exits).  With PATH_IN: print the table of that "
                    "log; with PATH_IN and PATH_OUT: write gnuplot data and plots into PATH_OUT.")
    parser.add_argument("-i", "--interval", type=float, default=1.0,
                        help="seconds between samples [default: %(default)s]")
    parser.add_argument("-p", "--pid", type=int, default=-1,
                        help="process to log, -1 for this one [default: %(default)s]")
    parser.add_argument("-l", "--log_level", type=int, dest="log_level", default=logging.INFO,
                        help="log level (debug=10, info=20, warning=30, error=40) [default: %(default)s]")
    parser.add_argument("path_in", nargs="?", help="a process log to read")
    parser.add_argument("path_out", nargs="?", help="a directory for the gnuplot data and plots")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s - %(process)5d - (%(threadName)-10s) - "
                                                     "%(levelname)-8s - %(message)s")
    prog = parser.prog
    try:
        if args.path_in and args.path_out:
            ret = invoke_gnuplot(args.path_in, args.path_out)
            if ret == -1:
                print(f"{prog}: gnuplot is not installed: wrote the .dat and .plt files into "
                      f"{args.path_out}", file=sys.stderr)
            return 1 if ret else 0
        if args.path_in:
            write_log_to_stdout(args.path_in)
            return 0
        lp = log_process(args.interval, args.log_level, args.pid).__enter__()
    except (OSError, ValueError, TypeError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else err
        print(f"{prog}: error: {why}", file=sys.stderr)
        return 1
    logger.info("logging pid %d every %g s; Ctrl-C to stop", lp.pid, lp.interval)
    try:
        while not lp._sampler.wait(0.5):     # True once the process has exited
            pass
    except KeyboardInterrupt:
        pass
    finally:
        lp.stop()
    return 0
