"""Run CPython's regression tests in-process inside one pymemtrace context, for `make soak`.

    python soak_runner.py profile|trace|trace_malloc OUT -- REGRTEST_ARGS...

runs `python -m test REGRTEST_ARGS` with the whole run inside
cPyMemTrace.Profile(filepath=OUT), cPyMemTrace.Trace(filepath=OUT) or
trace_malloc.TraceMalloc() (whose result is then written to OUT as JSON),
and exits with the test runner's exit code.  scripts/soak.py drives it.
"""

import json
import runpy
import sys


def run_regrtest(args):
    """`python -m test ARGS` in this process; returns its exit code."""
    saved = sys.argv
    sys.argv = [sys.executable + " -m test"] + args
    try:
        runpy.run_module("test", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def main(argv):
    if len(argv) < 3 or argv[2] != "--" or argv[0] not in ("profile", "trace", "trace_malloc"):
        sys.exit("usage: soak_runner.py profile|trace|trace_malloc OUT -- REGRTEST_ARGS...")
    mode, out, args = argv[0], argv[1], argv[3:]
    if mode == "trace_malloc":
        from pymemtrace import trace_malloc
        with trace_malloc.TraceMalloc("lineno") as tm:
            code = run_regrtest(args)
        with open(out, "w") as f:
            json.dump({"diff": tm.diff, "tracemalloc_memory_usage": tm.tracemalloc_memory_usage,
                       "net_statistics": len(tm.net_statistics)}, f)
            f.write("\n")
    else:
        from pymemtrace import cPyMemTrace
        ctx = cPyMemTrace.Profile if mode == "profile" else cPyMemTrace.Trace
        with ctx(filepath=out):
            code = run_regrtest(args)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
