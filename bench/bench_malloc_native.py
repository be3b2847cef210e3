"""bench: pymemtrace malloc --native (native stacks) beside --stacks and memray.

One allocation-heavy workload at a realistic depth: a loop of bytearrays of
1-6 KB (one malloc and one free each) run 20 Python calls deep, in a fresh
interpreter each time, in five configurations:
  * untraced
  * pymemtrace malloc --stacks (whole Python stacks, no native frames)
  * pymemtrace malloc --native (native stacks unwound per allocation, Python
    frames interleaved)
  * memray run (its default: Python stacks)
  * memray run --native (its native stacks)
Each runs RUNS times, interleaved; the medians of the workload's CPU time
(time.process_time() around the loop) and of the whole process's wall time
are given as ratios to the untraced run of the same round.  Callgrind counts
the tracer's own instructions per event for --stacks and --native (traced
minus untraced, n iterations minus 0, over the events they add: immune to
the machine's timing noise).  Also: capture bytes per event and the time
`report --native` takes to aggregate and symbolise the capture.
Run: .venv/bin/python bench/run_all.py malloc_native
"""
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_malloc import (_have_memray, _instructions_per_event, clean_env,  # noqa: E402
                          ratios, timed_rounds, traced_env)

from pymemtrace.readers.malloc_capture import load  # noqa: E402
from pymemtrace.readers.malloc_native import load_native_stacks  # noqa: E402

RUNS = 5
N = 200_000
DEPTH = 20

WORKLOAD = """\
import sys, time
def deep(d, n):
    if d:
        return deep(d - 1, n)
    keep = []
    for i in range(n):
        keep.append(bytearray(1000 + (i %% 50) * 100))     # one malloc + one free each
        if len(keep) > 64:
            keep.clear()
    return len(keep)
t0 = time.process_time()
deep(int(sys.argv[2]) if len(sys.argv) > 2 else %d, int(sys.argv[1]))
print(time.process_time() - t0)
""" % DEPTH


def run():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="pmt-bench-native-"))
    try:
        script = tmp / "work.py"
        script.write_text(WORKLOAD)
        py = sys.executable
        base_env = clean_env()
        cap = tmp / "w.cap"

        def ours(flag):
            return [py, str(script), str(N)], traced_env(base_env, cap, native=flag == "native",
                                                         stacks=flag != "native")

        configs = {
            "untraced": ([py, str(script), str(N)], base_env),
            "pymemtrace_stacks": ours("stacks"),
            "pymemtrace_native": ours("native"),
        }
        if _have_memray():
            for name, extra in (("memray", []), ("memray_native", ["--native"])):
                configs[name] = ([py, "-m", "memray", "run", "-q", "-f", *extra, "-o",
                                  str(tmp / "m.bin"), str(script), str(N)], base_env)
        sizes, report_s, events = {}, [], None

        def after(name):
            nonlocal events
            if name.startswith("pymemtrace"):
                sizes[name] = cap.stat().st_size
                if name == "pymemtrace_native":
                    events = load(str(cap))["events"]
                    t0 = time.perf_counter()
                    load_native_stacks(str(cap), 20)
                    report_s.append(time.perf_counter() - t0)
            elif name.startswith("memray"):
                sizes[name] = (tmp / "m.bin").stat().st_size

        med = timed_rounds(configs, RUNS, tmp, clear=("w.cap*", "m.bin*"), after=after)
        out = {
            "workload": f"{N} bytearrays of 1000..5900 bytes, {DEPTH} Python calls deep",
            "runs": RUNS,
            "untraced_s": round(med["untraced"][0], 4),
            "events_per_run": events,
            "capture_bytes": sizes,
            "report_native_s": round(statistics.median(report_s), 3),
            "command": ".venv/bin/python bench/run_all.py malloc_native",
        }
        out.update(ratios(med))
        for k in ("stacks", "native"):
            out[f"pymemtrace_{k}_instructions_per_event"] = _instructions_per_event(
                script, base_env, ours(k)[1], tmp, cap)
        if "memray" not in configs:
            out["memray"] = "not installed"
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
