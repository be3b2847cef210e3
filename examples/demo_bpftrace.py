"""``make demo`` part: py_malloc on the seed's create_string() example.

When this machine can run bpftrace (root, bpftrace, tracefs and
/usr/bin/python3.11 with USDT probes), runs
``pymemtrace bpftrace run py_malloc -- /usr/bin/python3.11 ex_bpftrace.py``
into ``py_malloc_ex_bpftrace.txt`` in the current directory (the demo output
directory) and prints its report.  Otherwise says why, and prints the report
of an output recorded from the same command (examples/recorded/).
"""
import os
import pathlib
import subprocess
import sys

from pymemtrace import bpftrace_run as cb
from pymemtrace.readers import bpftrace_log
from pymemtrace.reporters.bpftrace import format_report

HERE = pathlib.Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3.11"
RECORDED = HERE / "recorded" / "py_malloc_ex_bpftrace.txt"


def _why_not() -> str:
    return cb.live_unavailable_reason(PYTHON) or ""


def main() -> int:
    for name in cb.script_names():
        print(f"  {name:<20} {cb.script_summary(cb.scripts_dir() / (name + '.bt'))}")
    why = _why_not()
    if why:
        print(f"\nNot tracing live: {why}.  Report of a recorded run of the same command:\n")
        path = str(RECORDED)
    else:
        path = os.path.abspath("py_malloc_ex_bpftrace.txt")
        cmd = [sys.executable, "-m", "pymemtrace", "bpftrace", "run", "py_malloc", "-o", path,
               "--", PYTHON, str(HERE / "ex_bpftrace.py")]
        print("\n$ " + " ".join(["pymemtrace"] + cmd[3:]))
        r = subprocess.run(cmd, timeout=300)
        if r.returncode != 0:
            return r.returncode
        print(f"\n$ pymemtrace bpftrace report {path} --limit 5\n")
    rep = bpftrace_log.parse_file(path)
    print(format_report(rep, limit=5))
    top = rep.by_function()[0]
    print(f"create_string is first: {top['function'] == 'create_string'} "
          f"({top['bytes']:,d} bytes in {top['count']} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
