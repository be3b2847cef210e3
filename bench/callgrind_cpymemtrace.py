"""Instruction counts of cPyMemTrace per workload under valgrind's callgrind.

Timing on a shared machine is noisy; instruction counts repeat exactly.  For each
workload of cpmt_workloads.py and each mode (untraced, a no-op C profile function,
Profile(), Profile(0), a no-op C trace function, Trace()) this runs a fresh
interpreter under ``valgrind --tool=callgrind`` and counts the workload's own
instructions (counting switched on and off around it through callgrind's client
requests; without valgrind's headers, twice, with and without the workload, and the
difference), and reports them, the ratio
to the untraced run and to the matching no-op function, and the instructions added
per event.  Kernel time (the RSS preads, the log's writes) is not counted: the
bench's CPU-time ratios show it.

On CPython 3.12+ Profile and Trace attach through sys.monitoring (PEP 669) by default;
the modes Profile_legacy, Profile0_legacy and Trace_legacy attach them as the
thread's profile / trace function instead (cPyMemTrace.set_backend('legacy')).
noop_monitor is a C callback that does nothing, registered through sys.monitoring for
the events a profile function sees, noop_monitor_trace the same for the events a
trace function sees (without JUMP: a floor below the trace function's); each mode is
compared with the no-op of the hook it uses, and the monitoring modes also with the
legacy no-op (CPMT_CG_MODES=noop_profile,noop_monitor selects modes).  thread_<mode> runs the
workload on a second thread while this one is in <mode>: what another thread pays
(thread_untraced, thread_Profile, thread_Trace, thread_Profile_legacy, ...).

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
if sys.version_info >= (3, 12):
    MODES += ["noop_monitor", "noop_monitor_trace", "Profile_legacy", "Profile0_legacy",
              "Trace_legacy"]
# CPMT_CG_RETRIES: how often a run that valgrind killed at start-up is tried again.
RETRIES = int(os.environ.get("CPMT_CG_RETRIES", "6"))

CHILD = r"""
import os, sys
sys.path[:0] = [{here!r}, {build!r}]
import _cpmt_bench, cpmt_workloads
from pymemtrace import cPyMemTrace
mode, work, scale = sys.argv[1], sys.argv[2], int(sys.argv[3])
fn = cpmt_workloads.WORKLOADS[work]
fn(1) if scale else None            # warm: imports, caches (in both runs alike)
cg = getattr(_cpmt_bench, "cg", lambda flag: None)
def run():
    cg(True); fn(scale); cg(False)
events = 0
if mode.startswith("thread_"):      # the workload on a second thread; the tracer on this one
    import threading
    mode = mode[len("thread_"):]
    def run():
        t = threading.Thread(target=fn, args=(scale,))
        cg(True); t.start(); t.join(); cg(False)
if mode == "untraced":
    run()
elif mode == "noop_profile":
    _cpmt_bench.floor("noop"); run(); _cpmt_bench.floor(None)
elif mode.startswith("noop_monitor"):  # PEP 669: a C callback for a profiler's / tracer's events
    M = sys.monitoring; E = M.events; M.use_tool_id(4, "pymemtrace-bench")
    evs = [E.PY_START, E.PY_RESUME, E.PY_THROW, E.PY_RETURN, E.PY_YIELD, E.PY_UNWIND]
    evs += ([E.LINE, E.RAISE, E.STOP_ITERATION] if mode == "noop_monitor_trace"
            else [E.CALL, E.C_RETURN, E.C_RAISE])
    for e in evs: M.register_callback(4, e, _cpmt_bench.mon_noop)
    mask = 0
    for e in evs: mask |= e if e not in (E.C_RETURN, E.C_RAISE) else 0
    M.set_events(4, mask); run(); M.set_events(4, 0); M.free_tool_id(4)
elif mode == "noop_trace":
    _cpmt_bench.trace_floor("noop"); run(); _cpmt_bench.trace_floor(None)
else:
    if mode.endswith("_legacy"):
        mode = mode[:-len("_legacy")]
        cPyMemTrace.set_backend("legacy")
    cls = cPyMemTrace.Trace if mode == "Trace" else cPyMemTrace.Profile
    with cls(0 if mode == "Profile0" else -1, filepath=os.devnull) as t:
        run()
    events = t.events
print(events, int(hasattr(_cpmt_bench, "cg")))
"""


def _cg_toggle():
    """Can the child switch callgrind's counting on and off (_cpmt_bench.cg)?"""
    sys.path.insert(0, BUILD)
    try:
        import _cpmt_bench
        return hasattr(_cpmt_bench, "cg")
    except ImportError:
        return False
    finally:
        sys.path.remove(BUILD)


CG_TOGGLE = _cg_toggle()


def instructions(mode, work, scale, tmp):
    out = os.path.join(tmp, "cg.out")
    child = CHILD.format(here=HERE, build=BUILD)
    env = dict(os.environ, PYTHONHASHSEED="0")     # the same dicts and sets every run
    for attempt in range(RETRIES):    # valgrind on a loaded VM now and then dies at start-up
        r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            f"--instr-atstart={'no' if CG_TOGGLE else 'yes'}", sys.executable,
                            "-c", child, mode, work, str(scale)],
                           capture_output=True, text=True, env=env, cwd=tmp)
        m = re.search(r"Collected : (\d+)", r.stderr)
        if r.returncode == 0 and m:
            events, counted_alone = (int(x) for x in r.stdout.split()[-2:])
            return int(m.group(1)), events, bool(counted_alone)
    raise RuntimeError(f"callgrind failed on {mode} {work}: {r.stderr[-2000:]}")


def run(workloads):
    if shutil.which("valgrind") is None:
        sys.exit("callgrind_cpymemtrace: valgrind is not installed")
    modes = [m for m in os.environ.get("CPMT_CG_MODES", "").split(",") if m] or MODES
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for work in workloads:
            ir, events = {}, {}
            for mode in modes:
                full, ev, alone = instructions(mode, work, 1, tmp)
                # Counted around the workload alone (_cpmt_bench.cg); else minus a run without it.
                base = 0 if alone else instructions(mode, work, 0, tmp)[0]
                ir[mode], events[mode] = full - base, ev
            row = {f"{m}_Ir": ir[m] for m in modes}
            row.update({f"events_{m}": events[m] for m in modes if events[m]})
            if "untraced" in ir:
                for m in modes:
                    if m != "untraced":
                        row[f"{m}_vs_untraced"] = round(ir[m] / ir["untraced"], 2)
            mon = sys.version_info >= (3, 12)
            pairs = [("Profile", "noop_monitor" if mon else "noop_profile"),
                     ("Profile0", "noop_monitor" if mon else "noop_profile"),
                     ("Trace", "noop_monitor_trace" if mon else "noop_trace"),
                     ("noop_monitor", "noop_profile"), ("noop_monitor_trace", "noop_trace"),
                     ("Profile_legacy", "noop_profile"), ("Profile0_legacy", "noop_profile"),
                     ("Trace_legacy", "noop_trace"), ("thread_Profile", "thread_untraced"),
                     ("thread_Trace", "thread_untraced"),
                     ("thread_Profile_legacy", "thread_untraced")]
            if mon:
                pairs += [("Profile", "noop_profile"), ("Profile0", "noop_profile"),
                          ("Trace", "noop_trace")]
            for m, floor in pairs:
                if m in ir and floor in ir:
                    row[f"{m}_vs_{floor}"] = round(ir[m] / ir[floor], 3)
                    ev = events.get(m) or events.get("Trace" if "trace" in m.lower() else "Profile") or 0
                    if ev and not m.startswith("thread_"):
                        row[f"{m}_Ir_per_event_over_{floor}"] = round((ir[m] - ir[floor]) / ev, 1)
            result[work] = row
            print(work, json.dumps(row), file=sys.stderr)
    result["command"] = "valgrind --tool=callgrind via bench/callgrind_cpymemtrace.py"
    return result


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    import cpmt_workloads
    names = sys.argv[1:] or list(cpmt_workloads.WORKLOADS)
    print(json.dumps(run(names), indent=2))
