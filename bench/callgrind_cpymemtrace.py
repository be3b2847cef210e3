"""Instruction counts of cPyMemTrace per workload under valgrind's callgrind.

Timing on a shared machine is noisy; instruction counts repeat exactly.  For each
workload of cpmt_workloads.py and each mode (untraced, a no-op C profile function,
Profile(), Profile(0), a no-op C trace function, Trace()) this runs a fresh
interpreter under ``valgrind --tool=callgrind`` twice, with the workload and
without it, and reports the difference (the workload's own instructions), the ratio
to the untraced run and to the matching no-op function, and the instructions added
per event.  Kernel time (the RSS preads, the log's writes) is not counted: the
bench's CPU-time ratios show it.

Run: .venv/bin/python bench/callgrind_cpymemtrace.py [workload ...]   (after make install)
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("PYMEMTRACE_BUILD_DIR") or os.path.join(os.path.dirname(HERE), "build",
                                                                "meson")
MODES = ["untraced", "noop_profile", "Profile", "Profile0", "noop_trace", "Trace"]

CHILD = r"""
import os, sys
sys.path[:0] = [{here!r}, {build!r}]
import _cpmt_bench, cpmt_workloads
from pymemtrace import cPyMemTrace
mode, work, scale = sys.argv[1], sys.argv[2], int(sys.argv[3])
fn = cpmt_workloads.WORKLOADS[work]
fn(1) if scale else None            # warm: imports, caches (in both runs alike)
events = 0
if mode == "untraced":
    fn(scale)
elif mode == "noop_profile":
    _cpmt_bench.floor("noop"); fn(scale); _cpmt_bench.floor(None)
elif mode == "noop_trace":
    _cpmt_bench.trace_floor("noop"); fn(scale); _cpmt_bench.trace_floor(None)
else:
    cls = cPyMemTrace.Trace if mode == "Trace" else cPyMemTrace.Profile
    with cls(0 if mode == "Profile0" else -1, filepath=os.devnull) as t:
        fn(scale)
    events = t.events
print(events)
"""


def instructions(mode, work, scale, tmp):
    out = os.path.join(tmp, "cg.out")
    child = CHILD.format(here=HERE, build=BUILD)
    env = dict(os.environ, PYTHONHASHSEED="0")     # the same dicts and sets every run
    for attempt in range(3):    # valgrind on a loaded VM now and then dies at start-up
        r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            sys.executable, "-c", child, mode, work, str(scale)],
                           capture_output=True, text=True, env=env, cwd=tmp)
        m = re.search(r"Collected : (\d+)", r.stderr)
        if r.returncode == 0 and m:
            return int(m.group(1)), int(r.stdout.split()[-1])
    raise RuntimeError(f"callgrind failed on {mode} {work}: {r.stderr[-2000:]}")


def run(workloads):
    if shutil.which("valgrind") is None:
        sys.exit("callgrind_cpymemtrace: valgrind is not installed")
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for work in workloads:
            ir, events = {}, {}
            for mode in MODES:
                full, ev = instructions(mode, work, 1, tmp)
                base, _ = instructions(mode, work, 0, tmp)
                ir[mode], events[mode] = full - base, ev
            row = {f"{m}_Ir": ir[m] for m in MODES}
            row["events_profile"], row["events_trace"] = events["Profile"], events["Trace"]
            for m in MODES[1:]:
                row[f"{m}_vs_untraced"] = round(ir[m] / ir["untraced"], 2)
            row["Profile_vs_noop"] = round(ir["Profile"] / ir["noop_profile"], 3)
            row["Profile0_vs_noop"] = round(ir["Profile0"] / ir["noop_profile"], 3)
            row["Trace_vs_noop"] = round(ir["Trace"] / ir["noop_trace"], 3)
            row["Profile_Ir_per_event"] = round(
                (ir["Profile"] - ir["noop_profile"]) / max(1, events["Profile"]), 1)
            row["Profile0_Ir_per_event"] = round(
                (ir["Profile0"] - ir["noop_profile"]) / max(1, events["Profile"]), 1)
            row["Trace_Ir_per_event"] = round(
                (ir["Trace"] - ir["noop_trace"]) / max(1, events["Trace"]), 1)
            result[work] = row
            print(work, json.dumps(row), file=sys.stderr)
    result["command"] = "valgrind --tool=callgrind via bench/callgrind_cpymemtrace.py"
    return result


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    import cpmt_workloads
    names = sys.argv[1:] or list(cpmt_workloads.WORKLOADS)
    print(json.dumps(run(names), indent=2))
