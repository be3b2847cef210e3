"""``pymemtrace process``: sample any process's memory over time, then tabulate or plot it.

Monitoring is done by the C sampler thread of :mod:`pymemtrace._process`
writing JSON lines straight to the output file; this module only parses
arguments, launches the command and waits.
"""
from __future__ import annotations

import argparse
import datetime
import errno
import os
import signal
import subprocess
import sys
import time
from typing import List, Optional

from pymemtrace import process
from pymemtrace.commands import UserError

EPILOG = """\
examples:
  pymemtrace process --pid 1234 -i 0.5 -o app.jsonl   # until pid 1234 exits or Ctrl-C
  pymemtrace process --children -o build.jsonl -- make -j2
  pymemtrace process table build.jsonl
  pymemtrace process plot build.jsonl -o plots/

Each output line is one JSON object: timestamp, memory_info {rss, vms,
pfaults, pageins, shared, text, data}, cpu_times {user, system,
children_user, children_system}, elapsed_time, pid, num_threads; the first
has "event": "start", the last "event": "stop" and the peaks: rss_max_sampled
(the highest RSS sampled) and rss_peak_kernel, the kernel's own peak, which
sampling can miss, with rss_peak_source: "wait4 ru_maxrss" for a command
launched here (the largest single process), "VmHWM" for --pid.  On Linux pfaults counts
minor+major page faults and pageins major ones.  With --children the numbers
are summed over the process and its living descendants ("nprocs" says how
many).  Without -o the log goes to process_PID_YYYYmmdd_HHMMSS.jsonl (never
overwriting a file); -o - writes to standard output.
'table' and 'plot' read these files and also logs in which log_process()
wrote its records through logging (the seed's format).
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "process",
        help="log any process's memory over time (sampled in C); table and plot the log",
        description="Sample the memory and CPU use of a process (--pid) or of a command you "
                    "launch, every INTERVAL seconds, as JSON lines.  Or read such a log: "
                    "'process table LOG', 'process plot LOG -o DIR'.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="pymemtrace process [-h] [--pid PID] [-i SECONDS] [-o FILE] [--children] "
              "[--status] [--smaps] [-- COMMAND ARGS...]\n"
              "       pymemtrace process table LOG\n"
              "       pymemtrace process plot LOG [-o DIR]",
    )
    p.add_argument("--pid", type=int, help="monitor this existing process until it exits (or Ctrl-C)")
    p.add_argument("-i", "--interval", type=float, default=1.0, metavar="SECONDS",
                   help="seconds between samples (default 1.0; 0.0001 to 86400)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write JSON lines here ('-' for standard output)")
    p.add_argument("--children", action="store_true",
                   help="sum the process and its descendants (adds 'nprocs')")
    p.add_argument("--status", action="store_true", help="add rss_peak and swap (from /proc/PID/status)")
    p.add_argument("--smaps", action="store_true",
                   help="add pss and uss (from /proc/PID/smaps_rollup; needs permission to read its memory map)")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS...",
                   help="the command to launch and monitor (its exit code is returned)")
    p.set_defaults(func=run)


# ---- analysis subcommands -------------------------------------------------

def _read(path: str):
    from pymemtrace.readers import process_log
    from pymemtrace.reporters import process as process_reporter
    try:
        log = process_log.read_log(path)
    except FileNotFoundError:
        raise UserError(f"no such log file: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a log file") from None
    except process_log.NotALogFile as err:
        raise UserError(f"{err}: give a log file") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from None
    if not log.records:
        raise UserError(f"no process records in {path} (expected JSON lines or "
                        "'ProcessLoggingThread-JSON' log lines)")
    return log


def _warn_partial(log, path: str) -> None:
    if log.truncated:
        print(f"pymemtrace process: warning: the last line of {path} is truncated; "
              f"using the {len(log.records)} complete records", file=sys.stderr)


def cmd_table(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(prog="pymemtrace process table",
                                 description="Print a table of a process log (JSON lines or the seed's log lines).")
    ap.add_argument("log", help="the log file")
    a = ap.parse_args(argv)
    log = _read(a.log)
    _warn_partial(log, a.log)
    from pymemtrace.readers import process_log
    from pymemtrace.reporters import process as process_reporter
    try:
        process_reporter.table(log, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()
    return 0


def _quiet_broken_pipe() -> None:
    """The reader of our output (head) has gone: not an error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def cmd_plot(argv: List[str]) -> int:
    try:
        return _cmd_plot(argv)
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 0


def _cmd_plot(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="pymemtrace process plot",
        description="Plot RSS over time with labels as markers: writes NAME.dat and NAME.plt "
                    "(gnuplot), NAME.png when gnuplot is installed, and NAME.mpl.png when "
                    "matplotlib is installed.")
    ap.add_argument("log", help="the log file")
    ap.add_argument("-o", "--output-dir", default=".", metavar="DIR", help="where to write (default .)")
    ap.add_argument("--name", help="base name of the files (default: the log's name)")
    a = ap.parse_args(argv)
    log = _read(a.log)
    _warn_partial(log, a.log)
    from pymemtrace.readers import process_log
    from pymemtrace.reporters import process as process_reporter
    name = a.name or os.path.splitext(os.path.basename(a.log))[0] or "process"
    pids = sorted({r.pid for r in log.records})
    title = f"{os.path.basename(a.log)}: pid{'s' if len(pids) > 1 else ''} {', '.join(map(str, pids[:8]))}"
    try:
        os.makedirs(a.output_dir, exist_ok=True)
        dat, plt, png = process_reporter.write_gnuplot(log, a.output_dir, name, title)
    except PermissionError as err:
        raise UserError(f"cannot write into {a.output_dir}: {err.strerror}") from None
    except (NotADirectoryError, FileExistsError):
        raise UserError(f"{a.output_dir} is not a directory") from None
    except RuntimeError as err:
        raise UserError(str(err)) from None
    print(f"wrote {dat}")
    print(f"wrote {plt}")
    if png:
        print(f"wrote {png}")
    else:
        print("gnuplot not found: run 'gnuplot " + os.path.basename(plt) + f"' in {a.output_dir} to draw it")
    try:
        mpl = process_reporter.plot_matplotlib(log, os.path.join(a.output_dir, name + ".mpl.png"), title)
        print(f"wrote {mpl}")
    except ImportError:
        print("matplotlib not installed: no matplotlib PNG")
    return 0


# ---- monitoring ------------------------------------------------------------

def _open_output(path: Optional[str], pid_hint: str) -> "tuple[int, str]":
    """An fd for the JSON lines and a name to report."""
    if path == "-":
        return os.dup(1), "<stdout>"
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    if path is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
        path = f"process_{pid_hint}_{stamp}.jsonl"
        flags |= os.O_EXCL
    else:
        flags |= os.O_TRUNC
    try:
        return os.open(path, flags, 0o644), path
    except FileExistsError:
        raise UserError(f"{path} exists; not overwriting it (use -o)") from None
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}") from None


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _note(msg: str) -> None:
    print(f"pymemtrace process: {msg}", file=sys.stderr, flush=True)


def _exited(popen: subprocess.Popen, timeout: float = 0.0) -> bool:
    """True once the command has exited, waiting up to *timeout* seconds.

    The command is not reaped here (WNOWAIT): :func:`_reap` does that with
    wait4, which alone gives its kernel peak RSS."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _reap(popen: subprocess.Popen) -> int:
    """Reap the command; set its returncode; its peak RSS in bytes (-1 if unknown)."""
    if popen.returncode is not None:
        return -1
    try:
        _, status, usage = os.wait4(popen.pid, 0)
    except ChildProcessError:
        popen.wait()
        return -1
    popen.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss * 1024       # KiB on Linux


def _monitor(sampler, pid: int, out_name: str, popen: Optional[subprocess.Popen]) -> int:
    """Wait until the process ends (or Ctrl-C), finish the log.  Returns the
    sampler's errno (0 if it ended because the process exited or on Ctrl-C)."""
    interrupted = False
    try:
        while not sampler.wait(0.25):
            if popen is not None and _exited(popen):
                break
    except KeyboardInterrupt:
        interrupted = True
    if interrupted and popen is not None:
        # the command got the same SIGINT (same process group): let it finish
        try:
            while not _exited(popen, 5):
                _note(f"command {popen.pid} still running after Ctrl-C: terminating it")
                popen.terminate()
                if not _exited(popen, 5):
                    popen.kill()
        except KeyboardInterrupt:
            popen.kill()
    sampler.stop()
    stats = sampler.stats()
    stop = dict(event="stop", gone_key="reason",
                gone_text="interrupted" if interrupted else "process exited")
    if popen is not None:
        peak = _reap(popen)
        stop.update(exit_code=popen.returncode, peak=peak, peak_source="wait4 ru_maxrss")
    try:
        _, text, _ = sampler.stop_record(**stop)
    except OSError:
        text = None
    if text is not None:
        sampler.write_line(text)
    write_err = 0
    try:
        sampler.close()
    except OSError as err:
        write_err = err.errno or errno.EIO
    err = stats.get("errno", 0)
    if err and err != errno.ESRCH:
        write_err = write_err or err
    if write_err:
        _note(f"error: writing {out_name} failed: {os.strerror(write_err)}; "
              f"{stats['samples']} samples taken, what was written is kept")
    else:
        if interrupted:
            how = "interrupted"
        elif err == errno.ESRCH or popen is not None:
            how = "process exited"
        else:
            how = "stopped"
        _note(f"{stats['samples']} samples of pid {pid} written to {out_name} ({how})")
    return write_err


def run(args: argparse.Namespace) -> int:
    rest = list(args.rest or [])
    if rest and rest[0] in ("table", "plot") and args.pid is None:
        if rest[0] == "table":
            return cmd_table(rest[1:])
        return cmd_plot(rest[1:])
    if rest and rest[0] == "--":
        rest = rest[1:]
    try:
        interval = process._check_interval(args.interval)
    except (TypeError, ValueError) as err:
        raise UserError(str(err)) from None
    if args.pid is not None and rest:
        raise UserError("give either --pid PID or a command after --, not both")
    if args.pid is None and not rest:
        raise UserError("nothing to monitor: give --pid PID, or a command after -- "
                        "(or 'table LOG' / 'plot LOG')")
    kwargs = dict(children=args.children, status=args.status, smaps=args.smaps,
                  latency=min(0.5, max(0.1, interval)), hwm=args.pid is not None)

    if args.pid is not None:
        if args.pid <= 0:
            raise UserError(f"--pid must be a positive process id, not {args.pid}")
        fd, out_name = _open_output(args.output, str(args.pid))
        try:
            try:
                sampler = process.open_sampler(args.pid, interval, fd=fd, **kwargs)
            except ValueError:
                raise UserError(f"no process with pid {args.pid}") from None
            except PermissionError:
                raise UserError(f"permission denied reading /proc/{args.pid} "
                                "(a process of another user? try without --smaps, or as root)") from None
        except UserError:
            os.close(fd)
            if args.output is None:
                os.unlink(out_name)
            raise
        os.close(fd)
        sampler.start()
        return 1 if _monitor(sampler, args.pid, out_name, None) else 0

    # launch a command
    fd, out_name = _open_output(args.output, os.path.basename(rest[0]) or "cmd")
    try:
        popen = subprocess.Popen(rest)
    except (FileNotFoundError, PermissionError) as err:
        os.close(fd)
        if args.output is None:
            os.unlink(out_name)
        if isinstance(err, FileNotFoundError):
            _note(f"error: command not found: {rest[0]}")
            return 127
        _note(f"error: cannot execute: {rest[0]}")
        return 126
    try:
        sampler = process.open_sampler(popen.pid, interval, fd=fd, **kwargs)
    except (ValueError, ProcessLookupError):
        # it finished before the first sample
        os.close(fd)
        rc = popen.wait()
        _note(f"command exited before the first sample (exit code {_exit_code(rc)})")
        return _exit_code(rc)
    except BaseException:
        os.close(fd)
        popen.kill()
        popen.wait()
        raise
    os.close(fd)
    sampler.start()
    _monitor(sampler, popen.pid, out_name, popen)
    return _exit_code(popen.returncode)
