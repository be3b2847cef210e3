"""bench: pymemtrace malloc (the LD_PRELOAD tracer) beside tracemalloc and memray.

Two allocation-heavy Python workloads run in a fresh interpreter each time:
  * "bytearrays": bytearrays of 1-6 KB (one malloc and one free each) plus
    dict churn, with the default allocators (small objects stay in pymalloc
    arenas, which no malloc tracer sees one by one);
  * "every_object": the same loop under PYTHONMALLOC=malloc, so every Python
    object is a malloc/free (about 10 events per iteration: the worst case);
each configuration:
  * untraced
  * under pymemtrace malloc (LD_PRELOAD, Python frame + line per allocation)
  * under pymemtrace malloc --native (plus the native return address)
  * under pymemtrace malloc --stacks (every allocation's whole Python stack)
  * under tracemalloc (python -X tracemalloc=1: Python allocations only)
  * under memray (python -m memray run), if installed
Each configuration runs RUNS times, interleaved, and we keep the median.
Reported: the workload's own CPU time (time.process_time() inside the
program, around the loop: the fair comparison, and the least disturbed by
other work on a busy machine) and the whole process's wall time (start-up and
the tracer's exit work included), as ratios to the untraced run of the same
round, plus the capture sizes beside memray's default capture of the same run
(ours packed as `pymemtrace malloc` packs it after the run; the packing time
is added to our wall time, as memray's compression is in its own), the tracer's own instructions
per event counted by callgrind (when valgrind is installed: immune to the
machine's timing noise), and how fast the report (C reader
and aggregator, through pymemtrace.load) gets through a capture.
Run: make bench   (or: .venv/bin/python bench/run_all.py malloc)
"""
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from pymemtrace import _malloccap
from pymemtrace.malloc import LIBRARY
from pymemtrace.readers.malloc_capture import load

RUNS = int(os.environ.get("BENCH_RUNS", "7"))
N = 400_000

WORKLOAD = """\
import sys, time
def churn(n):
    keep = []
    for i in range(n):
        b = bytearray(1000 + (i % 50) * 100)     # one malloc + one free each
        keep.append(b)
        d = {"i": i, "b": len(b)}
        if len(keep) > 64:
            keep.clear()
    return len(keep)
t0 = time.process_time()
churn(int(sys.argv[1]))
print(time.process_time() - t0)
"""


def _have_memray():
    try:
        subprocess.run([sys.executable, "-m", "memray", "--version"], check=True,
                       capture_output=True)
        return True
    except (OSError, subprocess.CalledProcessError):
        return False


def _one(cmd, env, cwd):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {p.stderr[-2000:]}")
    return float(p.stdout.strip().splitlines()[-1]), wall


def clean_env(extra=None):
    """This process's environment without any tracer's variables, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "PYTHONMALLOC", "PYTHONTRACEMALLOC")}
    env.update(extra or {})
    return env


def traced_env(base_env, cap, native=False, stacks=False):
    """base_env under `pymemtrace malloc` (LD_PRELOAD), writing the capture cap."""
    env = dict(base_env, LD_PRELOAD=str(LIBRARY), PYMEMTRACE_MALLOC_OUT=str(cap))
    if native:
        env["PYMEMTRACE_MALLOC_NATIVE"] = "1"
    if stacks:
        env["PYMEMTRACE_MALLOC_STACKS"] = "1"
    return env


def timed_rounds(configs, runs, cwd, clear=("w.cap*",), after=None):
    """Every configuration {name: (cmd, env)} run `runs` times, interleaved
    (round after round, so the machine's load falls on all of them alike).
    Before each run the files matching `clear` in cwd are removed; after it
    after(name), if given, looks at what the run left and returns seconds to
    add to its wall time (or None).  Returns {name: (median workload CPU
    seconds, median wall seconds)}."""
    cpu = {k: [] for k in configs}
    wall = {k: [] for k in configs}
    for _ in range(runs):
        for name, (cmd, env) in configs.items():
            for pattern in clear:
                for f in pathlib.Path(cwd).glob(pattern):
                    f.unlink()
            t_cpu, t_wall = _one(cmd, env, cwd)
            if after is not None:
                t_wall += after(name) or 0.0
            cpu[name].append(t_cpu)
            wall[name].append(t_wall)
    return {k: (statistics.median(cpu[k]), statistics.median(wall[k])) for k in configs}


def ratios(medians):
    """Each traced configuration's CPU and wall medians over the untraced one's."""
    base_cpu, base_wall = medians["untraced"]
    out = {}
    for k, (cpu, wall) in medians.items():
        if k != "untraced":
            out[f"{k}_ratio"] = round(cpu / base_cpu, 2)
            out[f"{k}_wall_ratio"] = round(wall / base_wall, 2)
    return out


def _instructions(cmd, env, cwd):
    """User-space instructions executed by cmd, counted by callgrind (deterministic)."""
    p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                        "--trace-children=no", *cmd], env=env, cwd=cwd, capture_output=True,
                       text=True)
    m = re.search(r"Collected : (\d+)", p.stderr)
    if p.returncode != 0 or not m:
        sig = re.search(r"terminating with default action of signal \d+ \((\w+)\)", p.stderr)
        why = sig.group(1) if sig else f"exit {p.returncode}"
        if why == "SIGTRAP":
            why += " (a uprobe, e.g. a running bpftrace, is attached to this code)"
        raise RuntimeError(f"callgrind failed: {why}")
    return int(m.group(1))


def _instructions_per_event(script, base_env, traced_env, cwd, cap):
    """The tracer's own work per event, free of the machine's timing noise:
    (traced - untraced instructions) at n iterations minus the same at 0,
    over the events the n iterations add."""
    if shutil.which("valgrind") is None:
        return "needs valgrind"
    n = 20_000
    py = os.path.realpath(sys.executable)
    counts = {}
    try:
        for label, env in (("untraced", base_env), ("traced", traced_env)):
            for k in (0, n):
                for f in pathlib.Path(cwd).glob("w.cap*"):
                    f.unlink()
                counts[label, k] = _instructions([py, str(script), str(k)], env, cwd)
                if label == "traced":
                    counts["events", k] = load(str(cap))["events"]
    except RuntimeError as err:
        return str(err)
    extra = ((counts["traced", n] - counts["untraced", n])
             - (counts["traced", 0] - counts["untraced", 0]))
    return round(extra / (counts["events", n] - counts["events", 0]))


def run():
    return {"bytearrays": run_one({}, N), "every_object": run_one({"PYTHONMALLOC": "malloc"}, N // 2)}


def run_one(extra_env, n):
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="pmt-bench-malloc-"))
    try:
        script = tmp / "work.py"
        script.write_text(WORKLOAD)
        py = sys.executable
        base_env = clean_env(extra_env)
        cap = tmp / "w.cap"

        def ours(native, stacks=False):
            return [py, str(script), str(n)], traced_env(base_env, cap, native, stacks)

        configs = {
            "untraced": ([py, str(script), str(n)], base_env),
            "pymemtrace": ours(False),
            "pymemtrace_native": ours(True),
            "pymemtrace_stacks": ours(False, stacks=True),
            "tracemalloc": ([py, "-X", "tracemalloc=1", str(script), str(n)], base_env),
        }
        if _have_memray():
            configs["memray"] = ([py, "-m", "memray", "run", "-q", "-f", "-o",
                                  str(tmp / "m.bin"), str(script), str(n)], base_env)
        events = 0
        sizes = {}          # config -> (raw bytes, packed bytes) of the last run
        report_s = []

        def after(name):
            nonlocal events
            if name == "memray":
                sizes[name] = (None, (tmp / "m.bin").stat().st_size)
            if not name.startswith("pymemtrace"):
                return None
            raw = cap.stat().st_size
            t0 = time.perf_counter()
            _malloccap.pack(str(cap))       # what `pymemtrace malloc` does after the run
            packing = time.perf_counter() - t0
            sizes[name] = (raw, cap.stat().st_size)
            if name == "pymemtrace":
                t0 = time.perf_counter()
                r = load(str(cap))
                report_s.append(time.perf_counter() - t0)
                events = r["events"]
            return packing

        med = timed_rounds(configs, RUNS, tmp, after=after)
        out = {
            "workload": f"{n} iterations of bytearray(1000..5900) + dict churn"
                        + (f" with {extra_env}" if extra_env else ""),
            "runs": RUNS,
            "untraced_s": round(med["untraced"][0], 4),
            "events_per_run": events,
            "capture_bytes": {k: {"raw": v[0], "packed": v[1]} for k, v in sizes.items()},
            "capture_bytes_per_event": (round(sizes["pymemtrace"][1] / events, 2)
                                        if events else None),
            "report_s": round(statistics.median(report_s), 4) if report_s else None,
            "report_events_per_s": round(events / statistics.median(report_s)) if report_s else None,
            "command": ".venv/bin/python bench/run_all.py malloc",
        }
        out.update(ratios(med))
        out["pymemtrace_instructions_per_event"] = _instructions_per_event(
            script, base_env, ours(False)[1], tmp, cap)
        if "memray" not in configs:
            out["memray"] = "not installed"
        else:
            for k in ("pymemtrace", "pymemtrace_stacks"):
                out[f"{k}_capture_vs_memray"] = round(sizes[k][1] / sizes["memray"][1], 2)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
