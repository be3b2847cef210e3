"""bench: what cPyMemTrace's per-event time stamp costs, in CPU time.

Run it twice on the same workload, in the same minutes: with the normal build,
and with a build whose stamp is a counter (measurement only: a log from it has
meaningless times), made apart so the normal install is untouched:

    cp -a .venv /tmp/ctr-venv
    CFLAGS=-DPMT_COUNTER_CLOCK /tmp/ctr-venv/bin/python -m pip install -q \
        --no-build-isolation --no-deps -Cbuild-dir=/tmp/ctr-build .
    .venv/bin/python bench/bench_cpmt_clock.py fib churn
    /tmp/ctr-venv/bin/python bench/bench_cpmt_clock.py fib churn

The time bound is off in both (set_gate_limits(seconds=0)), so that both read
RSS at the same events.  For each workload (bench/cpmt_workloads.py at
TIMED_SCALE): the no-op profile and trace functions, Profile() and Trace(), in a
random order in each of ROUNDS rounds (PMT_BENCH_ROUNDS, 21); thread CPU time;
printed: the no-op's time an event (workload included), what Profile() and
Trace() add an event, and the median of their per-round ratios to the no-op.
On 3.12+, where Profile and Trace use sys.monitoring, also against the no-op
sys.monitoring callback for the same events (noop_monitor, noop_monitor_trace:
the matching no-op of that hook, as in bench_cpymemtrace.py).
The difference between the two builds is the stamp (README, Wall and CPU time).
"""
import gc
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from buildmod import load_build_module  # noqa: E402
from cpmt_workloads import TIMED_SCALE, WORKLOADS  # noqa: E402
from bench_cpymemtrace import MONITORING, _mon_hook  # noqa: E402

from pymemtrace import cPyMemTrace  # noqa: E402

_bench = load_build_module("_cpmt_bench")
ROUNDS = int(os.environ.get("PMT_BENCH_ROUNDS", "21"))


def _events(kind, fn, scale, path):
    with (cPyMemTrace.Profile if kind == "P" else cPyMemTrace.Trace)(filepath=path):
        fn(scale)
    with open(path) as f:
        end = [ln for ln in f if ln.startswith("# END events=")][-1]
    os.unlink(path)
    return int(end.split()[2].split("=")[1])


def _run(mode, fn, scale, path):
    gc.collect()
    if mode.startswith("noop_monitor"):
        attach, detach = _mon_hook(mode == "noop_monitor_trace")
        attach()
        try:
            t = time.thread_time()
            fn(scale)
            return time.thread_time() - t
        finally:
            detach()
    if mode in ("noop", "noop_trace"):
        floor = _bench.floor if mode == "noop" else _bench.trace_floor
        floor("noop")
        t = time.thread_time()
        fn(scale)
        t = time.thread_time() - t
        floor(None)
        return t
    with (cPyMemTrace.Profile if mode == "P" else cPyMemTrace.Trace)(filepath=path):
        t = time.thread_time()
        fn(scale)
        t = time.thread_time() - t
    os.unlink(path)
    return t


def main(names):
    cPyMemTrace.set_gate_limits(seconds=0)
    rnd = random.Random(2)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "clock.log")
        for name in names or ["fib", "churn"]:
            if name not in WORKLOADS:
                sys.exit(f"bench_cpmt_clock: no workload {name!r} (one of {', '.join(WORKLOADS)})")
            fn, scale = WORKLOADS[name], TIMED_SCALE[name]
            ev = {k: _events(k, fn, scale, path) for k in ("P", "T")}
            floors = (("noop", "P"), ("noop_trace", "T"))
            if MONITORING:
                floors += (("noop_monitor", "P"), ("noop_monitor_trace", "T"))
            res = {m: [] for m in ("noop", "P", "noop_trace", "T")
                   + (("noop_monitor", "noop_monitor_trace") if MONITORING else ())}
            for _ in range(ROUNDS):
                modes = list(res)
                rnd.shuffle(modes)
                for m in modes:
                    res[m].append(_run(m, fn, scale, path))
            med = statistics.median
            out = [name]
            for noop, m in floors:
                ratio = med([a / b for a, b in zip(res[m], res[noop])])
                out.append(f"{noop} {med(res[noop]) / ev[m] * 1e9:.1f} ns/event, "
                           f"{'Profile' if m == 'P' else 'Trace'}() +"
                           f"{(med(res[m]) - med(res[noop])) / ev[m] * 1e9:.2f} ns (x{ratio:.3f})")
            print("  ".join(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
