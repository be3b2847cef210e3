"""Example: every malloc() and free() of a Python program, traced with
bpftrace and reconciled (the Linux version of the original's DTrace example).

``python -m pymemtrace.examples.ex_dtrace`` runs ``example.py`` under
``pymemtrace bpftrace run py_flow_malloc_free`` (which needs root, bpftrace
and a Python built with USDT probes, such as Debian's /usr/bin/python3.11),
then reads the log with :mod:`pymemtrace.util.dtrace_log_analyse` and
prints what was allocated, freed and still held, and by which functions.
When something it needs is missing it says which, and exits with status 1.
"""
import collections
import os
import sys
import tempfile

#: A Python with USDT probes to run the traced workload (`--python` to change).
DEFAULT_PYTHON = "/usr/bin/python3.11"


def main(argv=None) -> int:
    import argparse

    from pymemtrace import bpftrace_run as bt
    from pymemtrace.util import dtrace_log_analyse as dla

    ap = argparse.ArgumentParser(prog="python -m pymemtrace.examples.ex_dtrace",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=DEFAULT_PYTHON,
                    help="a Python with USDT probes to run the workload [default: %(default)s]")
    ap.add_argument("-o", "--output", help="keep the bpftrace log here (default: a temporary file)")
    args = ap.parse_args(argv)
    if not os.path.exists(args.python):
        reason = f"needs {args.python}, a Python built with USDT probes (--with-dtrace)"
    else:
        reason = bt.live_unavailable_reason(args.python)
    if reason:
        print(f"ex_dtrace: cannot trace here: {reason}.  Nothing was traced.", file=sys.stderr)
        return 1
    workload = os.path.join(os.path.dirname(os.path.abspath(__file__)), "example.py")
    with tempfile.TemporaryDirectory(prefix="ex_dtrace-") as tmp:
        log = args.output or os.path.join(tmp, "py_flow_malloc_free.log")
        try:
            bt.run("py_flow_malloc_free", None, [args.python, workload, "1"], log, quiet=True)
        except bt.BpftraceError as err:
            print(f"ex_dtrace: tracing failed: {err}", file=sys.stderr)
            return 1
        dtm = dla.read_dtrace_log(log)
    dla.pprint_mallocs(dtm)
    by_function = collections.Counter()
    for call in dtm.malloc_dict.values():
        by_function[f"{call.function} ({call.file}:{call.line})" if call.line > 0 else call.function] += call.size
    print("Still allocated at exit, by function:")
    for where, size in by_function.most_common(5):
        print(f"  {size:12,d} bytes  {where}")
    if args.output:
        print(f"log kept in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
