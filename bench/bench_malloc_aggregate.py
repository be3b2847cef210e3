"""bench: ``pymemtrace malloc --aggregate`` beside the event mode and ``memray run --aggregate``.

One workload (a churn of bytearrays from a few fixed stacks, plus a leak in a
list comprehension inside a named function), under PYTHONMALLOC=malloc so
every object is a malloc, run with N and 10*N iterations:
  * capture size: ours --aggregate (packed after the run, as the command
    does), ours --stacks (the event mode, packed), memray run --aggregate
    and memray run (default), each for N and 10*N;
  * overhead: the workload's own CPU time (time.process_time() around the
    loop) as a ratio to the untraced run, median of RUNS, interleaved;
  * the tracer's own instructions per event, counted by callgrind
    (deterministic: immune to the machine's load), --aggregate against
    --stacks;
  * agg_threads.c: one and two C threads doing nothing but malloc/free,
    untraced, event mode and --aggregate (wall time, median of RUNS);
  * what each leaves after SIGKILL: the workload loops for ever, is killed
    1.5 s in (after a checkpoint), and each side's report is tried on what
    it left.
memray is not a test requirement: MEMRAY_PYTHON=/path/to/python with memray
(see bench_malloc_reports.py), else sys.executable is tried.
Run: .venv/bin/python bench/run_all.py malloc_aggregate
"""
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from pymemtrace.malloc import LIBRARY
from pymemtrace.readers.malloc_capture import load

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_malloc import _instructions_per_event  # noqa: E402  (the same callgrind method)
from bench_malloc_reports import _memray_python  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
N = int(os.environ.get("BENCH_AGG_N", "100000"))

WORKLOAD = """\
import sys, time
keep = []
def churn(i):
    return [bytearray(100 + (i + k) % 50) for k in range(8)]
def leak(i):
    keep.append([bytes(64) for _ in range(2)])
def main(n):
    i = 0
    while n < 0 or i < n:
        churn(i)
        if i % 10 == 0:
            leak(i)
        i += 1
t0 = time.process_time()
main(int(sys.argv[1]))
print(time.process_time() - t0)
"""


def _env(base, **kw):
    env = dict(base)
    env.update(kw)
    return env


def _run(cmd, env, cwd):
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {p.stderr[-1500:]}")
    return float(p.stdout.strip().splitlines()[-1])


def _pack(path):
    from pymemtrace import _malloccap
    _malloccap.pack(str(path))
    return os.path.getsize(path)


def run() -> dict:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="pmt-bench-agg-"))
    try:
        return _measure(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(tmp):
    script = tmp / "work.py"
    script.write_text(WORKLOAD)
    mpy = _memray_python()
    py = mpy or sys.executable
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LD_PRELOAD", "PYMEMTRACE"))}
    base["PYTHONMALLOC"] = "malloc"
    cap = tmp / "w.cap"
    ours = {
        "aggregate": _env(base, LD_PRELOAD=str(LIBRARY), PYMEMTRACE_MALLOC_OUT=str(cap),
                          PYMEMTRACE_MALLOC_AGGREGATE="1"),
        "stacks": _env(base, LD_PRELOAD=str(LIBRARY), PYMEMTRACE_MALLOC_OUT=str(cap),
                       PYMEMTRACE_MALLOC_STACKS="1"),
    }
    out = {"n": N, "python": sys.version.split()[0], "memray": "not installed"}

    def fresh():
        for f in tmp.glob("w.cap*"):
            f.unlink()

    # sizes, N and 10N
    sizes = {}
    for n in (N, 10 * N):
        for mode, env in ours.items():
            fresh()
            _run([py, str(script), str(n)], env, tmp)
            sizes[f"{mode}_{n}"] = _pack(cap)
            if mode == "aggregate":
                sizes[f"events_{n}"] = load(str(cap))["events"]
        if mpy:
            for label, extra in (("memray_aggregate", ["--aggregate"]), ("memray", [])):
                binf = tmp / f"m{n}{label}.bin"
                _run([mpy, "-m", "memray", "run", "-q", "-f", *extra, "-o", str(binf),
                      str(script), str(n)], base, tmp)
                sizes[f"{label}_{n}"] = os.path.getsize(binf)
                binf.unlink()
    out["capture_bytes"] = sizes

    # overhead: the workload's CPU time, interleaved rounds
    cpu = {"untraced": [], "aggregate": [], "stacks": []}
    if mpy:
        cpu["memray_aggregate"] = []
    for _ in range(RUNS):
        cpu["untraced"].append(_run([py, str(script), str(N)], base, tmp))
        for mode, env in ours.items():
            fresh()
            cpu[mode].append(_run([py, str(script), str(N)], env, tmp))
        if mpy:
            cpu["memray_aggregate"].append(_run(
                [mpy, "-m", "memray", "run", "-q", "-f", "--aggregate", "-o",
                 str(tmp / "m.bin"), str(script), str(N)], base, tmp))
    med = {k: statistics.median(v) for k, v in cpu.items()}
    out["cpu_s"] = {k: round(v, 3) for k, v in med.items()}
    out["cpu_ratio"] = {k: round(v / med["untraced"], 2) for k, v in med.items()}

    # the tracer's own instructions per event (callgrind)
    fresh()
    out["instructions_per_event"] = {
        mode: _instructions_per_event(script, base, env, tmp, cap)
        for mode, env in ours.items()}

    # two C threads allocating at once: the one lock over the table
    out["threads_wall_s"] = _threads(tmp, cap)

    # after SIGKILL
    out["after_sigkill"] = _after_kill(tmp, script, base, ours["aggregate"], cap, mpy)
    if mpy:
        out["memray"] = subprocess.run([mpy, "-m", "memray", "--version"], capture_output=True,
                                       text=True).stdout.strip()
    return out


def _threads(tmp, cap):
    exe = tmp / "agg_threads"
    if shutil.which("cc") is None or subprocess.run(
            ["cc", "-O2", "-pthread", "-o", str(exe), str(HERE / "agg_threads.c")]).returncode:
        return "needs a C compiler"
    lib = {"LD_PRELOAD": str(LIBRARY), "PYMEMTRACE_MALLOC_OUT": str(cap)}
    modes = {"untraced": {}, "events": lib, "aggregate": dict(lib, PYMEMTRACE_MALLOC_AGGREGATE="1")}
    got = {}
    for threads in (1, 2):
        times = {m: [] for m in modes}
        for _ in range(RUNS):
            for m, extra in modes.items():
                for f in tmp.glob("w.cap*"):
                    f.unlink()
                times[m].append(_run([str(exe), str(threads)], _env(os.environ, **extra), tmp))
        got[f"{threads}_thread"] = {m: round(statistics.median(v), 3) for m, v in times.items()}
    return got


def _kill_after(cmd, env, cwd, seconds):
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    p.send_signal(signal.SIGKILL)
    p.wait()


def _after_kill(tmp, script, base, env, cap, mpy):
    got = {}
    for f in tmp.glob("w.cap*"):
        f.unlink()
    _kill_after([sys.executable, str(script), "-1"], env, tmp, 1.5)
    rep = subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", "report", str(cap)],
                         capture_output=True, text=True, cwd=tmp)
    if rep.returncode == 0:
        r = load(str(cap))
        got["pymemtrace"] = (f"report from checkpoint {r['checkpoint']} "
                             f"({r['total_count']:,} allocations, peak {r['peak_bytes']:,} B)")
    else:
        got["pymemtrace"] = "no report: " + rep.stderr.strip()[-300:]
    if mpy:
        binf = tmp / "killed.bin"
        _kill_after([mpy, "-m", "memray", "run", "-q", "-f", "--aggregate", "-o", str(binf),
                     str(script), "-1"], base, tmp, 1.5)
        size = os.path.getsize(binf) if binf.exists() else 0
        st = subprocess.run([mpy, "-m", "memray", "stats", str(binf)], capture_output=True,
                            text=True, cwd=tmp)
        got["memray_aggregate"] = (f"{size:,} bytes left; memray stats exit {st.returncode}: "
                                   + (st.stderr.strip() or st.stdout.strip())[-300:])
    return got


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
