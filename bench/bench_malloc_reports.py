"""bench: report generation of ``pymemtrace malloc`` beside memray's, on the same program.

One workload (several distinct stacks, a leak in a list comprehension inside
a named function, a spike freed before exit, churn) is traced once by
``pymemtrace malloc --stacks`` and once by ``memray run`` with the same
interpreter.  Then every view is generated from each capture, several times,
and the median wall time and the reporter's peak RSS (wait4) are printed as
JSON with the ratio pymemtrace / memray for the views that answer the same
question:

    peak     report --view peak      vs memray table (its peak by location; memray
                                     tree is an interactive terminal program)
    flame    flamegraph -o x.html    vs memray flamegraph
    leaks    report --view leaks     vs memray flamegraph --leaks
    all      report --view all       vs memray stats
    time     report --view time      vs memray flamegraph --temporal
    summary  report --view summary   vs memray summary
    pprof    export --format pprof   (memray has none)

memray is not a test requirement: give an interpreter that has it with
``MEMRAY_PYTHON=/path/to/python`` (``python -m venv /tmp/mr && /tmp/mr/bin/pip
install memray``), else the sys.executable is tried, else memray's side says
"not installed".  ``BENCH_REPORT_N`` sets the workload's size (allocations in
its churn, default 400000) and ``BENCH_REPORT_REPEAT`` the runs per view (3).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

WORKLOAD = """\
import os, sys

def leaf(n, size):
    return [bytearray(size + i % 64) for i in range(n)]

def branch_a(n):
    return leaf(n, 600)

def branch_b(n):
    return leaf(n, 900)

def churn(n):
    for i in range(n // 1000):
        (branch_a if i % 2 else branch_b)(1000)

def leaky(n):
    return [bytearray(2000) for _ in range(n)]

def spike():
    return len(bytearray(50_000_000))

keep = leaky(2000)
spike()
churn(int(sys.argv[1]))
os._exit(0)
"""


def _run(argv, env=None):
    """Wall seconds and peak RSS (bytes) of one run of argv; raises on failure."""
    t0 = time.perf_counter()
    # run elsewhere than the checkout: `python -m pymemtrace` must find the installed package
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                         cwd=tempfile.gettempdir())
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {err[-500:]}")
    return wall, ru.ru_maxrss * 1024


def _median(argv, repeat, env=None):
    runs = [_run(argv, env) for _ in range(repeat)]
    return {"seconds": round(statistics.median(r[0] for r in runs), 3),
            "max_rss_mib": round(max(r[1] for r in runs) / 2 ** 20, 1)}


def _memray_python():
    for py in (os.environ.get("MEMRAY_PYTHON"), sys.executable):
        if py and subprocess.run([py, "-m", "memray", "--version"], capture_output=True).returncode == 0:
            return py
    return None


def run() -> dict:
    """The medians and ratios as a dict (bench/run_all.py calls this)."""
    n = int(os.environ.get("BENCH_REPORT_N", "400000"))
    repeat = int(os.environ.get("BENCH_REPORT_REPEAT", "3"))
    mpy = _memray_python()
    run_py = mpy or sys.executable
    out = {"bench": "malloc_reports", "workload_allocations": n, "repeat": repeat,
           "load_average": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as d:
        work = os.path.join(d, "work.py")
        with open(work, "w") as f:
            f.write(textwrap.dedent(WORKLOAD))
        cap = os.path.join(d, "w.cap")
        pmt = [sys.executable, "-m", "pymemtrace", "malloc"]
        _run(pmt + ["--stacks", "-o", cap, "--", run_py, work, str(n)])
        out["pymemtrace_capture_bytes"] = os.path.getsize(cap)
        ours = {
            "peak": pmt + ["report", cap, "--view", "peak"],
            "flame": pmt + ["flamegraph", cap, "-o", os.path.join(d, "p.html")],
            "leaks": pmt + ["report", cap, "--view", "leaks"],
            "all": pmt + ["report", cap, "--view", "all"],
            "time": pmt + ["report", cap, "--view", "time"],
            "summary": pmt + ["report", cap, "--view", "summary"],
            "pprof": pmt + ["export", cap, "-o", os.path.join(d, "p.pb.gz")],
        }
        out["pymemtrace"] = {k: _median(v, repeat) for k, v in ours.items()}
        if mpy is None:
            out["memray"] = "not installed (MEMRAY_PYTHON=python with memray)"
        else:
            binf = os.path.join(d, "w.bin")
            _run([mpy, "-m", "memray", "run", "-q", "-f", "-o", binf, work, str(n)])
            out["memray_capture_bytes"] = os.path.getsize(binf)
            mr = [mpy, "-m", "memray"]
            html = os.path.join(d, "m.html")
            theirs = {
                "peak": mr + ["table", "-f", "-o", os.path.join(d, "t.html"), binf],
                "flame": mr + ["flamegraph", "-f", "-o", html, binf],
                "leaks": mr + ["flamegraph", "--leaks", "-f", "-o", html, binf],
                "all": mr + ["stats", binf],
                "time": mr + ["flamegraph", "--temporal", "-f", "-o", html, binf],
                "summary": mr + ["summary", binf],
            }
            env = dict(os.environ, COLUMNS="120")
            out["memray"] = {k: _median(v, repeat, env) for k, v in theirs.items()}
            out["ratio_seconds"] = {k: round(out["pymemtrace"][k]["seconds"]
                                             / out["memray"][k]["seconds"], 2)
                                    for k in theirs}
    return out


if __name__ == "__main__":
    json.dump(run(), sys.stdout, indent=1)
    sys.stdout.write("\n")
