"""bench: pymemtrace.malloc.Tracker (in-process) beside the LD_PRELOAD mode on the same block.

One program, one block, traced three ways in fresh interpreters:
  * untraced
  * preload: run under the preload library, started paused, the block wrapped
    in pymemtrace.malloc.Tracing() (LD_PRELOAD mode, whole Python stacks)
  * tracker: the block wrapped in pymemtrace.malloc.Tracker() (in-process,
    relocation slots rewritten; whole Python stacks, its default; pack=False,
    since the preload run's capture is not packed either)
Two blocks: "churn" (bytearrays and dicts: one malloc/free pair per object
under PYTHONMALLOC=malloc) and "mixed" (json, zlib, re, sqlite3, os.listdir,
decimal: allocations made inside C libraries and libc as well as Python's).

Reported per block: the block's own CPU time (time.process_time() around the
block, inside the with: the interposition's set-up and the packing are not
in it) as ratios to untraced, median of RUNS interleaved rounds; the tracer's
instructions per event counted by callgrind (traced minus untraced at n
iterations, minus the same at 0, over the events the n iterations add); and
what the in-process mode does not see: the bytes and calls of the block the
preload capture has and the tracker's lacks (allocations made through
calls that do not go through a relocation slot).
Run: .venv/bin/python bench/bench_malloc_tracker.py   (BENCH_RUNS=7)
"""
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile

from bench_malloc import _instructions
from pymemtrace.malloc import LIBRARY
from pymemtrace.readers.malloc_capture import load

RUNS = int(os.environ.get("BENCH_RUNS", "5"))

PROGRAM = """\
import contextlib, decimal, json, os, re, sqlite3, sys, time, zlib
from pymemtrace.malloc import Tracker, Tracing

def churn(n):
    keep = []
    for i in range(n):
        b = bytearray(1000 + (i % 50) * 100)
        keep.append(b)
        d = {"i": i, "b": len(b)}
        if len(keep) > 64:
            keep.clear()

def mixed(n):
    db = sqlite3.connect(":memory:")
    db.execute("create table t (k integer, v text)")
    for i in range(n):
        s = json.dumps({"i": i, "l": list(range(i % 40)), "s": "x" * (i % 300)})
        json.loads(s)
        zlib.decompress(zlib.compress(s.encode() * 4))
        re.sub(r"(\\d+)", r"<\\1>", s)
        db.execute("insert into t values (?, ?)", (i, s))
        if i % 50 == 0:
            os.listdir("/usr/lib")
            decimal.Decimal(i + 1).sqrt()
    db.close()

block, mode, n, cap = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = {"untraced": contextlib.nullcontext, "preload": Tracing,
       "tracker": lambda: Tracker(cap, pack=False)}[mode]()
work = {"churn": churn, "mixed": mixed}[block]
with ctx:
    t0 = time.process_time()
    work(n)
    t1 = time.process_time()
print(t1 - t0)
"""

BLOCKS = {"churn": 200_000, "mixed": 20_000}


def _env(base, mode, cap):
    env = dict(base)
    if mode == "preload":
        env.update(LD_PRELOAD=str(LIBRARY), PYMEMTRACE_MALLOC_OUT=str(cap),
                   PYMEMTRACE_MALLOC_STACKS="1", PYMEMTRACE_MALLOC_START="paused")
    return env


def _cmd(script, block, mode, n, cap):
    return [sys.executable, str(script), block, mode, str(n), str(cap)]


def _clean(tmp):
    for f in tmp.glob("w.cap*"):
        f.unlink()


def _run(script, block, mode, n, cap, base, tmp):
    _clean(tmp)
    p = subprocess.run(_cmd(script, block, mode, n, cap), env=_env(base, mode, cap), cwd=tmp,
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{block}/{mode} failed: {p.stderr[-2000:]}")
    return float(p.stdout.split()[-1])


def _per_event(script, block, mode, base, tmp, cap):
    """The tracer's instructions per event in this mode (deterministic)."""
    n = BLOCKS[block] // 20
    counts = {}
    for label in ("untraced", mode):
        for k in (0, n):
            _clean(tmp)
            env = _env(base, label, cap)
            counts[label, k] = _instructions(_cmd(script, block, label, k, cap), env, tmp)
            if label != "untraced":
                counts["events", k] = load(str(cap))["events"]
    extra = ((counts[mode, n] - counts["untraced", n]) - (counts[mode, 0] - counts["untraced", 0]))
    return round(extra / (counts["events", n] - counts["events", 0]))


def _seen(script, block, mode, n, cap, base, tmp):
    _run(script, block, mode, n, cap, base, tmp)
    r = load(str(cap))
    return {"events": r["events"], "bytes": r["total_bytes"], "allocations": r["total_count"],
            "malloc_bytes": r["malloc_bytes"], "mmap_bytes": r["mmap_bytes"]}


def run_block(block, base, tmp, script):
    n = BLOCKS[block]
    cap = tmp / "w.cap"
    times = {m: [] for m in ("untraced", "preload", "tracker")}
    for _ in range(RUNS):
        for mode in times:
            times[mode].append(_run(script, block, mode, n, cap, base, tmp))
    med = {m: statistics.median(v) for m, v in times.items()}
    out = {"iterations": n, "runs": RUNS, "untraced_s": round(med["untraced"], 4),
           "preload_ratio": round(med["preload"] / med["untraced"], 2),
           "tracker_ratio": round(med["tracker"] / med["untraced"], 2),
           "tracker_vs_preload": round(med["tracker"] / med["preload"], 2)}
    pre = _seen(script, block, "preload", n, cap, base, tmp)
    trk = _seen(script, block, "tracker", n, cap, base, tmp)
    out["preload_seen"], out["tracker_seen"] = pre, trk
    out["tracker_missed_bytes_fraction"] = round(1 - trk["bytes"] / pre["bytes"], 4)
    out["tracker_missed_allocations_fraction"] = round(
        1 - trk["allocations"] / pre["allocations"], 4)
    if shutil.which("valgrind"):
        for mode in ("preload", "tracker"):
            try:
                out[f"{mode}_instructions_per_event"] = _per_event(script, block, mode, base,
                                                                   tmp, cap)
            except RuntimeError as err:
                out[f"{mode}_instructions_per_event"] = str(err)
    else:
        out["instructions_per_event"] = "needs valgrind"
    return out


def run():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="pmt-bench-tracker-"))
    try:
        script = tmp / "prog.py"
        script.write_text(PROGRAM)
        base = {k: v for k, v in os.environ.items()
                if k not in ("LD_PRELOAD", "PYTHONTRACEMALLOC") and
                not k.startswith("PYMEMTRACE_MALLOC_")}
        out = {"command": ".venv/bin/python bench/bench_malloc_tracker.py"}
        for block in BLOCKS:
            out[block] = run_block(block, dict(base, PYTHONMALLOC="malloc"), tmp, script)
        out["mixed_pymalloc"] = run_block("mixed", base, tmp, script)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
