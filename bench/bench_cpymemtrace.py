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
class-heavy object graph) at TIMED_SCALE (~50-60 ms untraced each), each Profile() /
Profile(0) against the no-op profile function and Trace() against the no-op trace function
on the same workload (targets 1.15, 2 and 1.15); on CPython 3.12+, where they attach through
sys.monitoring, against a no-op sys.monitoring callback for the same events, and the legacy
hook (set_backend('legacy')) against the no-op functions.  There the workload alone is timed,
inside the hook (after __enter__, before __exit__; gc.collect() before each run, so that
the cycles objects leaves are not collected in some runs and not in others); the fixed cost of a context (creating
the log, its header, END line and close) is under context_fixed_us, beside the cost of
creating, writing and closing such a file with os.*.  ROUNDS=15 rounds (PMT_BENCH_ROUNDS);
in a round every workload's modes run once each, in a random (seeded) order, so the two
runs of a ratio are a few seconds apart at most; a ratio is taken within a round and
reported as the median over rounds, with its quartiles (_iqr) and extremes (_range), in
CPU and wall time (_of_min: the ratio of the fastest runs, the least disturbed);
workloads_machine gives the load average and the share of steal (/proc/stat) while they
ran.  PMT_BENCH_ONLY=workloads runs these alone.
bench/callgrind_cpymemtrace.py gives the same comparisons in instruction counts, which
repeat exactly on a busy machine.
calls_only: the same ratios for the calls alone (fib + list building, no 1 MiB
strings), the worst case for a per-event cost.
Also reported: per run, the events seen, the RSS reads actually made and the rows
written (per_run_*), and the untraced time of one run.

Run: make bench   (or: .venv/bin/python bench/run_all.py cpymemtrace)
"""
import functools
import gc
import os
import random
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
from cpmt_workloads import TIMED_SCALE, WORKLOADS    # noqa: E402  (fib, churn, json, objects)

# bench/ext/_cpmt_bench.c: the no-op (and one-pread) profile functions the ratios
# are measured against.
_cpmt_bench = load_build_module("_cpmt_bench")

MONITORING = sys.version_info >= (3, 12)
RUNS = int(os.environ.get("PMT_BENCH_RUNS", "9"))
# rounds of the workloads (bench/cpmt_workloads.py at TIMED_SCALE, ~50 ms untraced each)
ROUNDS = int(os.environ.get("PMT_BENCH_ROUNDS", "15"))
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


def _quartiles(xs):
    """(q1, median, q3) of xs (the inclusive method: within min..max)."""
    xs = sorted(xs)
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


def _cpu_stat():
    """(steal, total) jiffies of all CPUs from /proc/stat, or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return v[7] if len(v) > 7 else 0, sum(v[:8])


class _Machine:
    """What the machine did meanwhile: the load average and the share of CPU time the
    hypervisor took (steal, /proc/stat) while the rounds ran."""

    def __enter__(self):
        self.load0, self.stat0, self.t0 = os.getloadavg(), _cpu_stat(), time.time()
        self.loads, self.steals, self.last = [], [], self.stat0
        return self

    def tick(self):
        """A round has ended: its load average and steal share."""
        self.loads.append(os.getloadavg()[0])
        now = _cpu_stat()
        if now and self.last and now[1] > self.last[1]:
            self.steals.append((now[0] - self.last[0]) / (now[1] - self.last[1]))
        self.last = now

    def __exit__(self, *exc):
        self.load1, self.stat1 = os.getloadavg(), _cpu_stat()
        return False

    def report(self):
        out = {"loadavg_1min_start_end": [round(self.load0[0], 2), round(self.load1[0], 2)],
               "cpus": os.cpu_count(), "seconds": round(time.time() - self.t0, 1),
               "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.t0))}
        if self.loads:
            out["loadavg_1min_rounds_min_median_max"] = [
                round(f(self.loads), 2) for f in (min, statistics.median, max)]
        if self.stat0 and self.stat1 and self.stat1[1] > self.stat0[1]:
            out["steal_share"] = round((self.stat1[0] - self.stat0[0])
                                       / (self.stat1[1] - self.stat0[1]), 4)
        if self.steals:
            out["steal_share_worst_round"] = round(max(self.steals), 4)
        return out


def _inside(attach, detach, work):
    """A run timed inside the hook: attach, time work() alone, detach.  The fixed cost of
    entering and leaving a context (log file, header, END line) is not in the ratio; it is
    measured on its own (_context_cost)."""
    def run():
        gc.collect()    # every run starts from the same collector state (objects makes cycles)
        attach()
        try:
            return _timed(work)
        finally:
            detach()
    return run


def _inside_ctx(factory, tmp, tag, work):
    counter = [0]

    def run():
        counter[0] += 1
        path = os.path.join(tmp, f"{tag}_{counter[0]}.log")
        gc.collect()
        try:
            with factory(path):
                return _timed(work)
        finally:
            os.unlink(path)
    return run


def _mon_hook(trace):
    """attach / detach of a no-op sys.monitoring C callback for a profiler's (tracer's)
    events: the floor of the hook Profile (Trace) uses on 3.12+."""
    M = sys.monitoring
    E = M.events
    evs = [E.PY_START, E.PY_RESUME, E.PY_THROW, E.PY_RETURN, E.PY_YIELD, E.PY_UNWIND]
    evs += [E.LINE, E.RAISE, E.STOP_ITERATION] if trace else [E.CALL, E.C_RETURN, E.C_RAISE]
    mask = 0
    for e in evs:
        mask |= e if e not in (E.C_RETURN, E.C_RAISE) else 0

    def attach():
        M.use_tool_id(4, "pymemtrace-bench")
        for e in evs:
            M.register_callback(4, e, _cpmt_bench.mon_noop)
        M.set_events(4, mask)

    def detach():
        M.set_events(4, 0)
        for e in evs:
            M.register_callback(4, e, None)
        M.free_tool_id(4)
    return attach, detach


def _workload_modes(tmp):
    """{workload: {mode: run}}: each run times the workload (at TIMED_SCALE) inside
    its hook."""
    P, T = cPyMemTrace.Profile, cPyMemTrace.Trace
    out = {}
    for w, fn in WORKLOADS.items():
        work = functools.partial(fn, TIMED_SCALE[w])
        m = out[w] = {
            "untraced": _inside(lambda: None, lambda: None, work),
            "noop": _inside(lambda: _cpmt_bench.floor("noop"), lambda: _cpmt_bench.floor(None),
                            work),
            "noop_trace": _inside(lambda: _cpmt_bench.trace_floor("noop"),
                                  lambda: _cpmt_bench.trace_floor(None), work),
            "profile": _inside_ctx(lambda p: P(filepath=p), tmp, f"w{w}p", work),
            "profile0": _inside_ctx(lambda p: P(0, filepath=p), tmp, f"w{w}p0", work),
            "trace": _inside_ctx(lambda p: T(filepath=p), tmp, f"w{w}t", work),
        }
        if MONITORING:      # the hook Profile / Trace use there, and the legacy one
            m["noop_monitor"] = _inside(*_mon_hook(False), work)
            m["noop_monitor_trace"] = _inside(*_mon_hook(True), work)
            m["profile_legacy"] = _inside_ctx(lambda p: _Legacy(P(filepath=p)), tmp,
                                              f"w{w}pl", work)
            m["trace_legacy"] = _inside_ctx(lambda p: _Legacy(T(filepath=p)), tmp,
                                            f"w{w}tl", work)
    return out


# Each mode against the no-op of the hook it uses (and, on 3.12+, the hooks' no-ops
# against each other).
FLOORS = ({"profile": "noop_monitor", "profile0": "noop_monitor", "trace": "noop_monitor_trace",
           "profile_legacy": "noop", "trace_legacy": "noop_trace", "noop_monitor": "noop",
           "noop_monitor_trace": "noop_trace"} if MONITORING
          else {"profile": "noop", "profile0": "noop", "trace": "noop_trace"})


def _workloads(tmp, rounds):
    """Every workload's modes, ROUNDS rounds; in a round each workload's modes run once each,
    one after the other in a random order (seeded), so the runs a ratio compares are
    seconds apart and no mode always follows the same one.  A ratio is taken within a
    round; reported: its median over the rounds, the quartiles and the extremes."""
    modes = _workload_modes(tmp)
    for m in modes.values():
        for fn in m.values():   # warm up: imports, caches, the first log file
            fn()
    rnd = random.Random(13)
    times = {w: {mode: [] for mode in m} for w, m in modes.items()}
    with _Machine() as machine:
        for _ in range(rounds):
            order = list(modes)
            rnd.shuffle(order)
            for w in order:
                names = list(modes[w])
                rnd.shuffle(names)
                for mode in names:
                    times[w][mode].append(modes[w][mode]())
            machine.tick()
    out = {}
    for w, t in times.items():
        o = out[w] = {"untraced_ms": round(statistics.median(c for c, _ in t["untraced"]) * 1e3, 2),
                      "scale": TIMED_SCALE[w]}
        pairs = dict(FLOORS, noop="untraced")
        for mode, floor in pairs.items():
            for k, unit in ((0, "cpu"), (1, "wall")):
                rs = [a[k] / b[k] for a, b in zip(t[mode], t[floor])]
                q1, med, q3 = _quartiles(rs)
                key = f"{mode}_vs_{floor}_{unit}" if mode != "noop" else f"noop_ratio_{unit}"
                o[key] = round(med, 3)
                o[key + "_iqr"] = [round(q1, 3), round(q3, 3)]
                o[key + "_range"] = [round(min(rs), 3), round(max(rs), 3)]
                # the fastest run of each: the least disturbed on a busy machine
                o[key + "_of_min"] = round(min(a[k] for a in t[mode])
                                           / min(b[k] for b in t[floor]), 3)
        o["noop_ratio"] = round(o["noop_ratio_cpu"], 2)
    return out, machine.report()


def _context_cost(tmp, batches=7, n=100):
    """The fixed cost of one context, `with Profile(filepath=p): pass` (and Trace) on a
    new file each, in microseconds of CPU and wall time (median over batches of n), beside
    the floor of creating, writing and closing a file of the same size with os.*."""
    hdr = b"x" * 160

    def file_floor(p):
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        os.write(fd, hdr)
        os.close(fd)

    def ctx(cls):
        def one(p):
            with cls(filepath=p):
                pass
        return one
    kinds = {"profile": ctx(cPyMemTrace.Profile), "trace": ctx(cPyMemTrace.Trace),
             "file_floor": file_floor}
    res = {k: [] for k in kinds}
    for b in range(batches + 1):
        for k, one in kinds.items():
            paths = [os.path.join(tmp, f"ctx_{k}_{i}.log") for i in range(n)]
            w0, c0 = time.perf_counter(), _clock()
            for p in paths:
                one(p)
            dt = ((_clock() - c0) / n * 1e6, (time.perf_counter() - w0) / n * 1e6)
            for p in paths:
                os.unlink(p)
            if b:       # the first batch warms up
                res[k].append(dt)
    return {k: {"cpu_us": round(statistics.median(c for c, _ in v), 1),
                "wall_us": round(statistics.median(w for _, w in v), 1)} for k, v in res.items()}


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = {}
        if os.environ.get("PMT_BENCH_ONLY") != "workloads":
            out = _main_table(tmp)
        out["workloads"], out["workloads_machine"] = _workloads(tmp, ROUNDS)
        out["workloads_runs"] = (
            f"{ROUNDS} rounds; in each, every workload's modes once each in a random order; "
            "thread CPU time and wall time of the workload alone inside the hook; per-round "
            "ratios: median, _iqr (quartiles), _range (min, max); _of_min: fastest / fastest")
        out["context_fixed_us"] = _context_cost(tmp)
        out["command"] = "make bench  (or: .venv/bin/python bench/run_all.py cpymemtrace)"
    return out


def _main_table(tmp) -> dict:
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
           for name in modes if name != "untraced" and not name.startswith("calls_")}
    out["runs"] = f"median over {RUNS} rounds of best-of-{INNER}; thread CPU time and wall"
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
    return out


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
