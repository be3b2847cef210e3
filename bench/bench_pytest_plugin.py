"""bench: what the pytest plugin costs the tests it does not track.

A generated suite of trivial tests (``def test_N(): pass``) is run by pytest
in a subprocess in three ways:

    absent    ``-p no:pymemtrace``: as if pymemtrace were not installed
    idle      the plugin loaded, not asked (no --pymemtrace, no marker)
    marked    one more test marked ``limit_memory``: the per-test hooks are
              registered and see every test; that one test is tracked

Printed as JSON: the median wall time of interleaved runs (``BENCH_PYTEST_N``
tests, default 2000, ``BENCH_PYTEST_RUNS`` runs, default 5) and their ratios to
``absent``; with valgrind installed, callgrind's instruction counts of each way
at two suite sizes (``BENCH_PYTEST_CG``, default "100,300"; 0 skips it), giving the
instructions per untracked test (the slope) and at start-up (the intercept).
The marked way's intercept includes tracking its one test.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

WAYS = {"absent": ["-p", "no:pymemtrace"], "idle": [], "marked": []}


def _suite(d: str, n: int, marked: bool) -> None:
    lines = ["import pytest\n"]
    lines += [f"def test_{i}():\n    pass\n" for i in range(n)]
    if marked:
        lines.append('@pytest.mark.limit_memory("1 GB")\ndef test_marked():\n    pass\n')
    with open(os.path.join(d, "test_suite.py"), "w") as f:
        f.write("\n".join(lines))


def _cmd(way: str) -> List[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
            *WAYS[way], "test_suite.py"]


def _dirs(root: str, n: int) -> Dict[str, str]:
    out = {}
    for way in WAYS:
        d = os.path.join(root, f"{way}-{n}")
        os.makedirs(d)
        _suite(d, n, way == "marked")
        out[way] = d
    return out


def _wall(root: str, n: int, runs: int) -> Dict[str, float]:
    dirs = _dirs(root, n)
    times: Dict[str, List[float]] = {w: [] for w in WAYS}
    for _ in range(runs):
        for way, d in dirs.items():
            t = time.perf_counter()
            subprocess.run(_cmd(way), cwd=d, check=True, capture_output=True)
            times[way].append(time.perf_counter() - t)
    return {w: statistics.median(t) for w, t in times.items()}


def _callgrind(root: str, n: int) -> Dict[str, int]:
    dirs = _dirs(root, n)
    out = {}
    for way, d in dirs.items():
        r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                            *_cmd(way)], cwd=d, capture_output=True, text=True)
        m = re.search(r"Collected : (\d+)", r.stderr)
        if r.returncode != 0 or not m:
            raise RuntimeError(f"callgrind of {way} failed: {r.stderr[-500:]}")
        out[way] = int(m.group(1))
    return out


def _slopes(root: str, small: int, big: int) -> dict:
    """Instructions per untracked test and at start-up, per way (two suite sizes)."""
    a = _callgrind(os.path.join(root, "cg"), small)
    b = _callgrind(os.path.join(root, "cg2"), big)
    out = {}
    for w in WAYS:
        per = round((b[w] - a[w]) / (big - small))
        out[w] = {"per_test_Ir": per, "startup_Ir": a[w] - small * per}
    for w in WAYS:
        out[w]["per_test_vs_absent"] = round(out[w]["per_test_Ir"] / out["absent"]["per_test_Ir"], 4)
        out[w]["startup_minus_absent_Ir"] = out[w]["startup_Ir"] - out["absent"]["startup_Ir"]
    return out


def run() -> dict:
    import pymemtrace.malloc

    if not hasattr(pymemtrace.malloc, "Tracker"):     # nothing can be tracked in this build
        WAYS.pop("marked", None)
    n = int(os.environ.get("BENCH_PYTEST_N", "2000"))
    runs = int(os.environ.get("BENCH_PYTEST_RUNS", "5"))
    root = tempfile.mkdtemp(prefix="bench-pytest-")
    try:
        wall = _wall(os.path.join(root, "wall"), n, runs)
        res: dict = {"tests": n, "runs": runs, "wall_s": wall,
                     "wall_ratio": {w: round(t / wall["absent"], 3) for w, t in wall.items()}}
        cg = os.environ.get("BENCH_PYTEST_CG", "100,300")
        if shutil.which("valgrind") and cg != "0":
            small, big = (int(x) for x in cg.split(","))
            try:
                res["callgrind"] = _slopes(root, small, big)
            except RuntimeError as e:     # a uprobe in libc (a running bpftrace) stops valgrind
                res["callgrind"] = {"error": str(e).splitlines()[0]}
        return res
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
