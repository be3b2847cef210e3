"""Benchmark of ``pymemtrace.process_tree``: the cost of one sample of a tree.

Run with ``make bench`` or ``.venv/bin/python bench/bench_process_tree.py``.

This process starts CHILDREN sleeping child processes, then times, in the
same run and interleaved, one sample of the whole tree (this process and its
children) as the tool takes it every interval:

* ``tree_us``: ``_process.Tree.sample()`` with the /proc scan for new
  descendants that the tool does at every sample (``tree_us_norescan``
  without it), RSS, faults, CPU times, threads and state of each process;
* ``psutil_us``: what the original did with psutil for the same columns:
  ``children(recursive=True)``, then per process, in ``oneshot()``,
  ``memory_info()``, ``cpu_times()``, ``num_threads()``, ``status()``.

Medians of REPEATS batches of CALLS samples, in microseconds per sample, and
``psutil_over_tree``, their ratio.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from pymemtrace import _process

REPEATS = int(os.environ.get("PMT_BENCH_REPEATS", "7"))
CALLS = 100
CHILDREN = 4


def _per_call(fn) -> float:
    t0 = time.perf_counter()
    for _ in range(CALLS):
        fn()
    return (time.perf_counter() - t0) / CALLS * 1e6


def run() -> dict:
    kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            for _ in range(CHILDREN)]
    try:
        tree = _process.Tree(os.getpid())
        while len(tree.sample()) < CHILDREN + 1:
            time.sleep(0.01)
        out = {"processes": CHILDREN + 1}
        try:
            import psutil
        except ImportError:
            psutil = None
        me = psutil.Process() if psutil else None

        def with_psutil():
            for p in [me] + me.children(recursive=True):
                with p.oneshot():
                    p.memory_info(), p.cpu_times(), p.num_threads(), p.status()

        runs = {"tree_us": [], "tree_us_norescan": [], "psutil_us": []}
        for _ in range(REPEATS):
            runs["tree_us"].append(_per_call(tree.sample))
            runs["tree_us_norescan"].append(_per_call(lambda: tree.sample(rescan=False)))
            if me is not None:
                runs["psutil_us"].append(_per_call(with_psutil))
        for k, v in runs.items():
            if v:
                out[k] = round(statistics.median(v), 1)
        if "psutil_us" in out:
            out["psutil_over_tree"] = round(out["psutil_us"] / out["tree_us"], 2)
        tree.close()
        return out
    finally:
        for k in kids:
            k.kill()
            k.wait()


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
