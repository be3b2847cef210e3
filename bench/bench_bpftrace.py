"""bench: the slowdown of a Python workload under each bpftrace script.

Two workloads (written to a temporary file): "calls" calls a small function
N times and makes a 1 KiB bytearray every tenth call; "c_heavy" runs lines
that each do about 20 us of work in C.  Each writes how long its loop took (time.perf_counter inside the traced process, so bpftrace's own
start-up -- compiling and attaching, about a second -- is not counted).  It
runs under /usr/bin/python3.11 (the interpreter with USDT probes) untraced
and under ``pymemtrace bpftrace run SCRIPT -- ...`` for every script,
interleaved, RUNS times; each ratio is the median traced time over the
median untraced time of the same run.  The seed quotes x90 to x100 for the
original DTrace scripts.

Needs root, bpftrace and /usr/bin/python3.11 with USDT probes; otherwise the
result says why it was skipped.
Run: make bench   (or: .venv/bin/python bench/run_all.py bpftrace)
"""
import os
import statistics
import subprocess
import sys
import tempfile

from pymemtrace import bpftrace_run as cb

PYTHON = "/usr/bin/python3.11"
RUNS = 5
N = 20_000
# The untraced "calls" loop runs 20 times longer (a few ms is too short to
# time on a busy machine); times are compared per iteration.
UNTRACED_SCALE = {"calls": 20, "c_heavy": 1}
SEED_RATIO = "x90 to x100"

# Two workloads bracket real programs: "calls" does almost nothing per Python
# call and line (the worst case: every line, call and return is a uprobe hit);
# "c_heavy" does about 20 us of C work per line (joins, encodes, sorts).
WORKLOAD = """\
import sys, time

def c_heavy(n):
    for i in range(n):
        s = " ".join(map(str, range(200)))
        b = sorted(s.encode())
        del b

def leaf(x):
    return x + 1

def alloc():
    return bytearray(1024)

def work(n):
    t = 0
    for i in range(n):
        t += leaf(i)
        if i % 10 == 0:
            alloc()
    return t

t0 = time.perf_counter()
if sys.argv[3] == "calls":
    work(int(sys.argv[1]))
else:
    c_heavy(int(sys.argv[1]) // 10)
dt = time.perf_counter() - t0
with open(sys.argv[2], "w") as f:
    f.write(repr(dt))
"""


def _why_skip():
    return cb.live_unavailable_reason(PYTHON)


def _time_once(tmp, script, n, kind):
    timing = os.path.join(tmp, "t.txt")
    if os.path.exists(timing):
        os.unlink(timing)
    work = [PYTHON, os.path.join(tmp, "work.py"), str(n), timing, kind]
    if script is None:
        subprocess.run(work, check=True, timeout=600)
    else:
        out = os.path.join(tmp, f"{script}.out")
        r = subprocess.run([sys.executable, "-m", "pymemtrace", "bpftrace", "run", script,
                            "-o", out, "--", *work], timeout=600, cwd=tmp,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{script}: exit {r.returncode}: {r.stderr.strip()[-800:]}")
        os.unlink(out)
    with open(timing) as f:
        return float(f.read())


def run() -> dict:
    why = _why_skip()
    if why:
        return {"skipped": why, "seed_dtrace_ratio": SEED_RATIO}
    scripts = cb.script_names()
    kinds = ("calls", "c_heavy")
    times = {(kind, name): [] for kind in kinds for name in [None] + scripts}
    with tempfile.TemporaryDirectory(prefix="bench-bpftrace-") as tmp:
        with open(os.path.join(tmp, "work.py"), "w") as f:
            f.write(WORKLOAD)
        for _ in range(RUNS):
            for kind, name in times:
                scale = UNTRACED_SCALE[kind] if name is None else 1
                times[kind, name].append(_time_once(tmp, name, N * scale, kind) / scale)
    result = {
        "workloads": {
            "calls": f"{N} calls of a 1-line function + {N // 10} bytearray(1024)",
            "c_heavy": f"{N // 10} x (join of 200 str, sort of its bytes): ~20 us of C per line",
        },
        "python": PYTHON,
        "runs": f"median of {RUNS}, loop timed inside the traced process "
                "(bpftrace start-up excluded)",
        "seed_dtrace_ratio": SEED_RATIO,
        "command": ".venv/bin/python bench/run_all.py bpftrace",
    }
    for kind in kinds:
        base = statistics.median(times[kind, None])
        res = {"untraced_ms": round(base * 1e3, 2),
               "untraced_timed_over": f"{UNTRACED_SCALE[kind]}x the loop, per-iteration time"}
        for name in scripts:
            med = statistics.median(times[kind, name])
            res[name] = {"traced_ms": round(med * 1e3, 2), "ratio": round(med / base, 1)}
        result[kind] = res
    return result


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
