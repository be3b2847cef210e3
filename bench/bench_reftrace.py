"""bench: ReferenceTracing's cost on one workload, against untraced and the original's.

Workload (bench/bench_reftrace.py --workload): 20,000 instances of a small
class built and freed through a list (and the list, range and int traffic that
goes with it), three rounds.  Each mode runs in a fresh interpreter, median of
5 repetitions of the workload in that interpreter:

  * untraced
  * ours: pymemtrace.reference_tracing.ReferenceTracing(filepath=...), defaults
    (builtins filtered out, the class's rows logged)
  * original: the original pymemtrace's cPyMemTrace.ReferenceTracing with the
    same arguments, if an interpreter with it installed is given in
    PYMEMTRACE_BENCH_ORIGINAL_PY (never part of this repository; build it
    yourself from its source with DEBUG = False in its setup.py)

Ratios are traced / untraced of the same interpreter.  ReferenceTracing needs
CPython 3.13+: on an older interpreter the bench uses PYMEMTRACE_BENCH_PY313
(an interpreter that can import this package) or reports why it skipped.
Run: make bench   (or: .venv/bin/python bench/run_all.py reftrace)
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

N_OBJECTS = 20_000
ROUNDS = 3
REPEATS = 5


class Item:
    def __init__(self, i):
        self.i = i


def workload():
    for _ in range(ROUNDS):
        items = [Item(i) for i in range(N_OBJECTS)]
        items.clear()


def _child(mode: str, log_dir: str) -> None:
    """Run in the measured interpreter: print the median seconds as JSON."""
    times = []
    for rep in range(REPEATS):
        log = os.path.join(log_dir, f"{mode}-{rep}.log")
        t0 = time.perf_counter()
        if mode == "untraced":
            workload()
        else:
            if mode == "ours":
                from pymemtrace.reference_tracing import ReferenceTracing
            else:
                from pymemtrace.cPyMemTrace import ReferenceTracing
            with ReferenceTracing(filepath=log):
                workload()
        times.append(time.perf_counter() - t0)
    size = os.path.getsize(log) if mode != "untraced" else 0
    print(json.dumps({"seconds": statistics.median(times), "log_bytes": size}))


def _measure(python: str, mode: str, env=None) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([python, __file__, "--child", mode, d], capture_output=True,
                             text=True, timeout=900, env=env)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout)


def _ours_python():
    from pymemtrace import reference_tracing
    if reference_tracing.AVAILABLE:
        return sys.executable
    return os.environ.get("PYMEMTRACE_BENCH_PY313")


def run() -> dict:
    ours_py = _ours_python()
    if not ours_py:
        return {"skipped": "ReferenceTracing needs CPython 3.13+: set PYMEMTRACE_BENCH_PY313 to "
                           "a 3.13 interpreter that imports this package"}
    res = {"workload": f"{ROUNDS} x {N_OBJECTS} objects created and freed", "python": ours_py}
    base = _measure(ours_py, "untraced")
    ours = _measure(ours_py, "ours")
    res["untraced_s"], res["ours_s"] = base.get("seconds"), ours.get("seconds")
    if "seconds" in base and "seconds" in ours:
        res["ours_ratio"] = round(ours["seconds"] / base["seconds"], 2)
        res["ours_log_bytes"] = ours["log_bytes"]
    orig_py = os.environ.get("PYMEMTRACE_BENCH_ORIGINAL_PY")
    if not orig_py:
        res["original"] = "not measured: set PYMEMTRACE_BENCH_ORIGINAL_PY"
        return res
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    obase = _measure(orig_py, "untraced", env)
    orig = _measure(orig_py, "original", env)
    res["original_untraced_s"], res["original_s"] = obase.get("seconds"), orig.get("seconds")
    if "seconds" in obase and "seconds" in orig:
        res["original_ratio"] = round(orig["seconds"] / obase["seconds"], 2)
        res["original_log_bytes"] = orig["log_bytes"]
    else:
        res["original_error"] = orig.get("error") or obase.get("error")
    return res


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 2 and sys.argv[1] == "--workload":
        workload()
    else:
        print(json.dumps(run(), indent=2))
