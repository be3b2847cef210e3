"""``make demo`` part: cPyMemTrace on the seed's example (8 x 1 MiB strings).

Runs examples/ex_cPyMemTrace.py as it is in a fresh interpreter in the current
directory (the demo output directory), then prints where the log went, its
first rows, and the rows where RSS moved most, read back with
:mod:`pymemtrace.readers.cpmt_log`.  The same example under ``Profile(0)`` (every event)
and ``Trace()`` (every line) follows.
"""
import os
import pathlib
import subprocess
import sys
import tempfile

from pymemtrace.readers import cpmt_log

HERE = pathlib.Path(__file__).resolve().parent


def _run(source: str, kind: str, name: str) -> pathlib.Path:
    """Run source as the script *name* in a fresh interpreter; return its new log."""
    before = set(pathlib.Path.cwd().glob(f"*_{kind}_*_PY*.log"))
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, name)
        with open(script, "w") as f:
            f.write(source)
        subprocess.run([sys.executable, script], check=True)
    (path,) = set(pathlib.Path.cwd().glob(f"*_{kind}_*_PY*.log")) - before
    return path.resolve()


def _show(path: pathlib.Path, title: str, head: int) -> cpmt_log.CpmtLog:
    log = cpmt_log.read(path)
    lines = path.read_text().splitlines()
    print(f"\n{title}\n  log: {path}\n  {len(log.records)} rows, "
          f"{'complete' if log.complete else 'INCOMPLETE'}; first rows:")
    for line in lines[:head + 1]:
        print(f"    {line}")
    if len(lines) > head + 2:
        print(f"    ... ({len(lines) - head - 2} more lines)")
    print(f"    {lines[-1]}")
    return log


def main() -> int:
    seed = (HERE / "ex_cPyMemTrace.py").read_text()
    log = _show(_run(seed, "P", "ex_cPyMemTrace.py"), "Profile() (the seed's example, trigger = one page):", 8)
    print("  largest RSS rises (dRSS, what, function, file#line):")
    for r in log.largest(8, increases_only=True):
        print(f"    {r.d_rss:+12,d}  {r.what:<8} {r.function:<14} {r.file}#{r.line}")
    steps = [r for r in log.largest(8, increases_only=True) if r.d_rss >= 1024**2]
    ok = len(steps) == 8 and all(r.what == "RETURN" and r.function == "create_string" for r in steps)
    print(f"  every +1 MiB step on the RETURN of create_string: {'yes' if ok else 'NO'}")
    _show(_run(seed.replace("Profile()", "Profile(0)"), "P", "ex_profile0.py"),
          "Profile(0) (every event):", 6)
    _show(_run(seed.replace("Profile()", "Trace()"), "T", "ex_trace.py"),
          "Trace() (lines too, trigger = one page):", 6)
    return 0 if ok and log.complete else 1


if __name__ == "__main__":
    sys.exit(main())
