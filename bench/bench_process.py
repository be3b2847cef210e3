"""Benchmark of ``pymemtrace.process``: cost of a sample, and the slowdown of
a CPU-bound Python program sampled every millisecond.

Run with ``make bench`` or ``.venv/bin/python bench/bench_process.py``.

Everything is measured in this one process, variants interleaved, and the
median of REPEATS runs reported as a ratio to the untraced run of the same
workload:

* ``sample_us_call``: one ``Sampler.sample()`` call from Python (read /proc,
  format JSON, make the Python tuple); ``sample_us_thread``: CPU time of the
  whole process per sample while the C thread samples every 100 us into
  /dev/null and the main thread sleeps (the cost of sampling as a program
  pays it); ``psutil_sample_us``: ``memory_info()`` + ``cpu_times()``.
* ``slowdown_*``: wall time of a CPU-bound pure-Python workload while being
  sampled every 1 ms, divided by its untraced wall time: through
  ``logging`` to a file (the seed's format), with C writing JSON lines
  (``output=``), and with a psutil sampler in a Python thread that logs
  each sample (the original design).  ``rate_*`` is the number of samples
  actually logged per second.
"""
from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time

from pymemtrace import _process, process

REPEATS = int(os.environ.get("PMT_BENCH_REPEATS", "15"))
INTERVAL = 0.001
FORMAT = ('%(asctime)s - %(filename)s#%(lineno)d - %(process)5d'
          ' - (%(threadName)-10s) - %(levelname)-8s - %(message)s')


def workload(n: int = 1_500_000) -> int:
    """CPU-bound pure Python: no I/O, no sleeping, a little allocation."""
    total = 0
    d = {}
    for i in range(n):
        total += (i * i) % 7
        if i % 1000 == 0:
            d[i] = str(i)
    return total + len(d)


_cpu: list = []


def timed(fn) -> float:
    """Wall time of fn(); its main-thread CPU time goes to _cpu."""
    c0 = time.thread_time()
    t0 = time.perf_counter()
    fn()
    t = time.perf_counter() - t0
    _cpu.append(time.thread_time() - c0)
    return t


class FileLogging:
    """A logger writing the seed's format to a temporary file."""

    def __init__(self, name: str):
        self.fd, self.path = tempfile.mkstemp(prefix=f"bench_process_{name}_", suffix=".log")
        os.close(self.fd)
        self.logger = logging.getLogger(f"bench.process.{name}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.handler = logging.FileHandler(self.path, mode="w")
        self.handler.setFormatter(logging.Formatter(FORMAT))
        self.logger.addHandler(self.handler)

    def count(self, marker: str = "ProcessLoggingThread-JSON") -> int:
        self.handler.flush()
        with open(self.path) as f:
            return sum(1 for line in f if marker in line)

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()
        os.unlink(self.path)


def psutil_sampler(logger: logging.Logger, interval: float, stop: threading.Event) -> None:
    """The original design: a Python thread that samples with psutil, logs
    JSON and sleeps."""
    import psutil
    proc = psutil.Process()
    t0 = time.time()
    while not stop.is_set():
        mi = proc.memory_info()
        ct = proc.cpu_times()
        data = {"timestamp": time.strftime("%Y-%m-%d %H:%M:%S"),
                "memory_info": {"rss": mi.rss, "vms": mi.vms},
                "cpu_times": {"user": ct.user, "system": ct.system,
                              "children_user": ct.children_user,
                              "children_system": ct.children_system},
                "elapsed_time": time.time() - t0, "pid": proc.pid}
        logger.info("ProcessLoggingThread-JSON %s", json.dumps(data))
        stop.wait(interval)


def run_logging() -> "tuple[float, float]":
    fl = FileLogging("c")
    try:
        with process.log_process(interval=INTERVAL, logger=fl.logger):
            t = timed(workload)
        return t, fl.count() / t
    finally:
        fl.close()


def run_file() -> "tuple[float, float]":
    fd, path = tempfile.mkstemp(prefix="bench_process_", suffix=".jsonl")
    os.close(fd)
    try:
        with process.log_process(interval=INTERVAL, output=path):
            t = timed(workload)
        with open(path) as f:
            n = sum(1 for _ in f)
        return t, n / t
    finally:
        os.unlink(path)


def run_psutil() -> "tuple[float, float]":
    fl = FileLogging("psutil")
    stop = threading.Event()
    th = threading.Thread(target=psutil_sampler, args=(fl.logger, INTERVAL, stop), name="ProcMon")
    try:
        th.start()
        t = timed(workload)
        stop.set()
        th.join()
        return t, fl.count() / t
    finally:
        fl.close()


def thread_named(name: str) -> int:
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() == name:
                    return int(tid)
        except OSError:
            pass
    return 0


def oncpu_ns(tid: int) -> int:
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def sample_costs() -> dict:
    s = _process.Sampler(os.getpid(), 1.0, path=os.devnull)
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        s.sample()
    call_us = (time.perf_counter() - t0) / n * 1e6
    s.close()

    # the C thread at 100 us into /dev/null while this thread sleeps
    s = _process.Sampler(os.getpid(), 1e-4, path=os.devnull)
    c0 = time.process_time()
    s.start()
    time.sleep(1.0)
    s.stop()
    cpu = time.process_time() - c0
    samples = s.stats()["samples"]
    s.close()

    # CPU time of the sampler thread itself at 1 ms (schedstat: ns on CPU)
    s = _process.Sampler(os.getpid(), INTERVAL, path=os.devnull)
    s.start()
    time.sleep(0.1)
    tid = thread_named("pmt-sampler")
    r0 = oncpu_ns(tid)
    n0 = s.stats()["samples"]
    time.sleep(1.0)
    r1 = oncpu_ns(tid)
    n1 = s.stats()["samples"]
    s.stop()
    s.close()
    per_sample_1ms = (r1 - r0) / 1e3 / max(n1 - n0, 1) if tid else float("nan")

    import psutil
    p = psutil.Process()
    t0 = time.perf_counter()
    for _ in range(n // 4):
        p.memory_info()
        p.cpu_times()
    ps_us = (time.perf_counter() - t0) / (n // 4) * 1e6
    # what the main thread pays per record when it logs a batch: our record
    # making plus a FileHandler with the seed's format (the user's cost)
    fl = FileLogging("emit")
    lp = process.log_process(interval=INTERVAL, logger=fl.logger)
    s = _process.Sampler(os.getpid(), 1.0, path=os.devnull)
    created, text = s.sample()
    s.close()
    batch = [(created, _process.KIND_SAMPLE, text)] * 100
    per = []
    for _ in range(9):
        t0 = time.perf_counter()
        for _ in range(10):
            lp._emit(batch, "ProcMon")
        per.append((time.perf_counter() - t0) / 1000 * 1e6)
    fl.close()
    emit_us = statistics.median(per)

    return {"sample_us_call": round(call_us, 2),
            "log_record_us_main_thread": round(emit_us, 2),
            "main_thread_cost_at_1khz_percent": round(emit_us * 1000 / 1e6 * 100, 2),
            "sample_us_thread": round(cpu / max(samples, 1) * 1e6, 2),
            "thread_samples_per_s_at_100us": samples,
            "sampler_thread_cpu_us_per_sample_at_1ms": round(per_sample_1ms, 2),
            "psutil_sample_us": round(ps_us, 2)}


def run() -> dict:
    result = sample_costs()
    workload(200_000)   # warm up
    variants = {
        # an untraced run in the traced slot: the noise floor of this machine
        "null": lambda: (timed(workload), 0.0),
        "logging": run_logging,
        "file": run_file,
        "psutil_thread": run_psutil,
    }
    ratio = {k: [] for k in variants}
    cpu_ratio = {k: [] for k in variants}
    rate = {k: [] for k in variants}
    base = []
    for rep in range(REPEATS):
        for name, fn in variants.items():
            # each traced run is paired with untraced runs just before and
            # after it, so that the noise of a busy machine mostly cancels
            _cpu.clear()
            b1 = timed(workload)
            t, r = fn()
            b2 = timed(workload)
            c1, c, c2 = _cpu[-3:]
            ratio[name].append(t / ((b1 + b2) / 2))
            cpu_ratio[name].append(c / ((c1 + c2) / 2))
            rate[name].append(r)
            base += [b1, b2]
    result.update({"interval_s": INTERVAL, "repeats": REPEATS,
                   "untraced_s": round(statistics.median(base), 4)})
    for name in variants:
        result[f"slowdown_{name}"] = round(statistics.median(ratio[name]), 4)
        result[f"main_thread_cpu_ratio_{name}"] = round(statistics.median(cpu_ratio[name]), 4)
        result[f"rate_{name}_per_s"] = round(statistics.median(rate[name]))
    del result["rate_null_per_s"]
    result["target"] = "slowdown_logging <= 1.05 with rate_logging_per_s >= 500"
    try:
        result["loadavg_at_end"] = os.getloadavg()[0]
    except OSError:
        pass
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
    sys.exit(0)
