"""bench: cPyMemTrace's cost on a call-heavy workload, as ratios to the untraced run.

The workload (the same in every mode): recursion (fib(17), ~5,000 calls), list
building (40 lists of 300 items with list.append, a C call per item) and eight
1 MiB strings made and dropped.  A round runs every mode back to back (each the
best of INNER=3 runs); a ratio is mode / untraced within a round, and what is
reported is the median of that ratio over RUNS=9 rounds.  Times are the
thread's CPU time (user + system: the log's writes and the RSS preads count;
time the machine gave to other processes does not); the same ratios in wall
time are under "wall_clock".  The modes:

  * floor_noop:   a C profile function that does nothing (what any profiler pays).
  * floor_pread:  a C profile function that only reads RSS once per event (one pread
                  on a kept-open /proc/self/statm): the cost of exact RSS per event.
  * profile:      cPyMemTrace.Profile() (trigger = one page), RSS read when the
                  allocator counters moved or a bound passed.     target <= 2.5
  * trace:        cPyMemTrace.Trace() likewise (LINE events too).  target <= 3
  * profile0:     cPyMemTrace.Profile(0): every event written.    target <= 4
  * profile_exact / profile0_exact: the same with set_exact_rss(True) (a pread per
                  event); exact_vs_floor = profile_exact / floor_pread, target <= 1.10.
workloads: bench/cpmt_workloads.py (recursion, allocation churn, a JSON round trip, a
class-heavy object graph), each Profile() / Profile(0) against the no-op profile
function and Trace() against the no-op trace function on the same workload
(targets 1.15, 2 and 1.15); on CPython 3.12+, where they attach through
sys.monitoring, against a no-op sys.monitoring callback for the same events, and
the legacy hook (set_backend('legacy')) against the no-op functions; CPU and wall
ratios.  PMT_BENCH_ONLY=workloads runs these alone.  bench/callgrind_cpymemtrace.py gives the same
comparisons in instruction counts, which repeat exactly on a busy machine.
calls_only: the same ratios for the calls alone (fib + list building, no 1 MiB
strings), the worst case for a per-event cost.
Also reported: per run, the events seen, the RSS reads actually made and the rows
written (per_run_*), and the untraced time of one run.

Run: make bench   (or: .venv/bin/python bench/run_all.py cpymemtrace)
"""
import os
import statistics
import sys
import tempfile
import time

# The workload is single-threaded and CPU-bound: its CPU time (this thread's,
# user + system, so the log's write(2)s and RSS preads count) is what tracing
# adds to, and unlike wall time it does not grow when other processes take
# the CPU away on a busy machine.  Wall-clock ratios are reported too.
_clock = time.thread_time

from pymemtrace import cPyMemTrace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from buildmod import load_build_module  # noqa: E402
from cpmt_workloads import WORKLOADS    # noqa: E402  (fib, churn, json, objects)

# bench/ext/_cpmt_bench.c: the no-op (and one-pread) profile functions the ratios
# are measured against.
_cpmt_bench = load_build_module("_cpmt_bench")

RUNS = int(os.environ.get("PMT_BENCH_RUNS", "9"))
INNER = 3
MIB = 1024 ** 2


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def build(n):
    l = []
    for i in range(n):
        l.append(i * 2)
    return l


def create_string(n):
    return ' ' * n


FIB_N = 19
BUILDS = 100


def calls():
    fib(FIB_N)
    for _ in range(BUILDS):
        build(300)


def workload():
    calls()
    blocks = [create_string(MIB) for _ in range(8)]
    del blocks


def _timed(fn):
    w0, c0 = time.perf_counter(), _clock()
    fn()
    return _clock() - c0, time.perf_counter() - w0


def _untraced(work=workload):
    def run():
        return _timed(work)
    return run


def _floor(mode, work=workload):
    def body():
        _cpmt_bench.floor(mode)
        try:
            work()
        finally:
            _cpmt_bench.floor(None)

    def run():
        return _timed(body)
    return run


def _trace_floor(work):
    def body():
        _cpmt_bench.trace_floor("noop")
        try:
            work()
        finally:
            _cpmt_bench.trace_floor(None)

    def run():
        return _timed(body)
    return run


MONITORING = sys.version_info >= (3, 12)


def _mon_floor(work, trace=False):
    """A C sys.monitoring callback that does nothing, for the events a profile
    (trace) function sees: the floor of the hook Profile (Trace) uses on 3.12+."""
    M = sys.monitoring
    E = M.events
    evs = [E.PY_START, E.PY_RESUME, E.PY_THROW, E.PY_RETURN, E.PY_YIELD, E.PY_UNWIND]
    evs += [E.LINE, E.RAISE, E.STOP_ITERATION] if trace else [E.CALL, E.C_RETURN, E.C_RAISE]
    mask = 0
    for e in evs:
        mask |= e if e not in (E.C_RETURN, E.C_RAISE) else 0

    def body():
        M.use_tool_id(4, "pymemtrace-bench")
        for e in evs:
            M.register_callback(4, e, _cpmt_bench.mon_noop)
        M.set_events(4, mask)
        try:
            work()
        finally:
            M.set_events(4, 0)
            for e in evs:
                M.register_callback(4, e, None)
            M.free_tool_id(4)

    def run():
        return _timed(body)
    return run


class _Legacy:
    """A context on the profile / trace function hook (set_backend('legacy'))."""

    def __init__(self, ctx):
        self.ctx = ctx

    def __enter__(self):
        old = cPyMemTrace.set_backend("legacy")
        try:
            return self.ctx.__enter__()
        finally:
            cPyMemTrace.set_backend(old)

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc)


def _ctx(factory, exact, tmp, tag, work=workload):
    counter = [0]

    def run():
        counter[0] += 1
        path = os.path.join(tmp, f"{tag}_{counter[0]}.log")
        old = cPyMemTrace.set_exact_rss(exact)

        def body():
            with factory(path):
                work()
        try:
            dt = _timed(body)
        finally:
            cPyMemTrace.set_exact_rss(old)
        os.unlink(path)
        return dt
    return run


def _counts(factory, tmp):
    path = os.path.join(tmp, "count.log")
    with factory(path) as t:
        workload()
    with open(path) as f:
        rows = sum(1 for line in f if line.startswith(("NEXT:", "PREV:")))
    os.unlink(path)
    return {"events": t.events, "rss_reads": t.rss_reads, "rows": rows}


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        only_workloads = os.environ.get("PMT_BENCH_ONLY") == "workloads"
        modes = {
            "untraced": _untraced(),
            "floor_noop": _floor("noop"),
            "floor_pread": _floor("pread"),
            "profile": _ctx(lambda p: cPyMemTrace.Profile(filepath=p), False, tmp, "p"),
            "trace": _ctx(lambda p: cPyMemTrace.Trace(filepath=p), False, tmp, "t"),
            "profile0": _ctx(lambda p: cPyMemTrace.Profile(0, filepath=p), False, tmp, "p0"),
            "profile_exact": _ctx(lambda p: cPyMemTrace.Profile(filepath=p), True, tmp, "pe"),
            "profile0_exact": _ctx(lambda p: cPyMemTrace.Profile(0, filepath=p), True, tmp, "p0e"),
            "trace_exact": _ctx(lambda p: cPyMemTrace.Trace(filepath=p), True, tmp, "te"),
            # the calls alone (no 1 MiB strings): the worst case for a per-event cost
            "calls_untraced": _untraced(calls),
            "calls_floor_noop": _floor("noop", calls),
            "calls_profile": _ctx(lambda p: cPyMemTrace.Profile(filepath=p), False, tmp, "cp",
                                  calls),
            "calls_trace": _ctx(lambda p: cPyMemTrace.Trace(filepath=p), False, tmp, "ct", calls),
            "calls_profile0": _ctx(lambda p: cPyMemTrace.Profile(0, filepath=p), False, tmp,
                                   "cp0", calls),
        }
        if only_workloads:
            modes = {"untraced": modes["untraced"]}
        # bench/cpmt_workloads.py: each against the no-op function of the same kind
        for w, fn in WORKLOADS.items():
            if MONITORING:      # the hook Profile / Trace use there, and the legacy one
                modes[f"w_{w}_noop_monitor"] = _mon_floor(fn)
                modes[f"w_{w}_noop_monitor_trace"] = _mon_floor(fn, trace=True)
                modes[f"w_{w}_profile_legacy"] = _ctx(
                    lambda p: _Legacy(cPyMemTrace.Profile(filepath=p)), False, tmp, f"w{w}pl", fn)
                modes[f"w_{w}_trace_legacy"] = _ctx(
                    lambda p: _Legacy(cPyMemTrace.Trace(filepath=p)), False, tmp, f"w{w}tl", fn)
            modes[f"w_{w}_untraced"] = _untraced(fn)
            modes[f"w_{w}_noop"] = _floor("noop", fn)
            modes[f"w_{w}_profile"] = _ctx(lambda p: cPyMemTrace.Profile(filepath=p), False,
                                           tmp, f"w{w}p", fn)
            modes[f"w_{w}_profile0"] = _ctx(lambda p: cPyMemTrace.Profile(0, filepath=p),
                                            False, tmp, f"w{w}p0", fn)
            modes[f"w_{w}_noop_trace"] = _trace_floor(fn)
            modes[f"w_{w}_trace"] = _ctx(lambda p: cPyMemTrace.Trace(filepath=p), False, tmp,
                                         f"w{w}t", fn)
        for fn in modes.values():     # warm up: imports, caches, the first log file
            fn()
        # One round times every mode back to back (each the best of INNER runs, which
        # drops the runs a busy machine preempted); a ratio is taken within a round,
        # and the reported ratio is the median over RUNS rounds.
        rounds = []
        for _ in range(RUNS):
            rounds.append({name: [min(t) for t in zip(*(fn() for _ in range(INNER)))]
                           for name, fn in modes.items()})

        def ratio(a, b, k=0):   # k = 0: CPU time, 1: wall time
            return statistics.median(r[a][k] / r[b][k] for r in rounds)

        out = {f"{name}_ratio": round(ratio(name, "untraced"), 2)
               for name in modes if name != "untraced"
               and not name.startswith(("calls_", "w_"))}
        out["workloads"] = {}
        for w in WORKLOADS:
            o = out["workloads"][w] = {
                "untraced_ms": round(
                    statistics.median(r[f"w_{w}_untraced"][0] for r in rounds) * 1e3, 2)}
            floors = {"profile": "noop", "profile0": "noop", "trace": "noop_trace"}
            if MONITORING:
                floors = {"profile": "noop_monitor", "profile0": "noop_monitor",
                          "trace": "noop_monitor_trace", "profile_legacy": "noop",
                          "trace_legacy": "noop_trace", "noop_monitor": "noop",
                          "noop_monitor_trace": "noop_trace"}
            for mode, floor in floors.items():
                for k, unit in ((0, "cpu"), (1, "wall")):
                    o[f"{mode}_vs_{floor}_{unit}"] = round(
                        ratio(f"w_{w}_{mode}", f"w_{w}_{floor}", k), 3)
            o["noop_ratio"] = round(ratio(f"w_{w}_noop", f"w_{w}_untraced"), 2)
        out["runs"] = f"median over {RUNS} rounds of best-of-{INNER}; thread CPU time and wall"
        if only_workloads:
            return out
        out["calls_only"] = {f"{name[6:]}_ratio": round(ratio(name, "calls_untraced"), 2)
                             for name in modes
                             if name.startswith("calls_") and name != "calls_untraced"}
        out["calls_only"]["untraced_ms"] = round(
            statistics.median(r["calls_untraced"][0] for r in rounds) * 1e3, 2)
        out["wall_clock"] = {f"{name}_ratio": round(ratio(name, "untraced", 1), 2)
                             for name in ("floor_noop", "floor_pread", "profile", "trace",
                                          "profile0", "profile_exact")}
        out["untraced_ms"] = round(statistics.median(r["untraced"][0] for r in rounds) * 1e3, 2)
        out["exact_vs_floor"] = round(ratio("profile_exact", "floor_pread"), 3)
        out["exact0_vs_floor"] = round(ratio("profile0_exact", "floor_pread"), 3)
        out["per_run_profile"] = _counts(lambda p: cPyMemTrace.Profile(filepath=p), tmp)
        out["per_run_trace"] = _counts(lambda p: cPyMemTrace.Trace(filepath=p), tmp)
        out["per_run_profile0"] = _counts(lambda p: cPyMemTrace.Profile(0, filepath=p), tmp)
        out["targets"] = {"profile_ratio": 2.5, "trace_ratio": 3.0, "profile0_ratio": 4.0,
                          "exact_vs_floor": 1.10, "workloads: profile_vs_noop": 1.15,
                          "workloads: trace_vs_noop_trace": 1.15,
                          "workloads: profile0_vs_noop": 2.0}
        out["command"] = "make bench  (or: .venv/bin/python bench/run_all.py cpymemtrace)"
    return out


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
