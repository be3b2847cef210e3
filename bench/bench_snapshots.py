"""bench: the snapshot tools, debug_malloc_stats and trace_malloc.

debug_malloc_stats (all per snapshot, median of 7 runs):
  * writer_devnull_us / writer_memstream_us: the interpreter's own statistics
    writer alone (what sys._debugmallocstats() runs), timed in C, into
    /dev/null and into our in-memory stream.
  * snapshot_us: one pymemtrace snapshot = writer into memory + parse in C.
    snapshot_vs_writer: median over interleaved rounds of snapshot / the faster
    writer-alone time of the same round (target <= 2).
  * diff_us: formatting one diff in C; diff_py_us: DiffSysDebugMallocStats.diff()
    from Python (the str included).
  * with_block_us: a whole empty `with DiffSysDebugMallocStats()` + diff().
  * fd2_python_us: the original way: fd 2 redirected to a file around
    sys._debugmallocstats(), read back and parsed with Python regexes;
    fd2_python_vs_writer is its ratio to the writer alone.
  * noise_blocks_*: sum over size classes of |blocks in use change| for an
    EMPTY block, ours vs the fd-2 way (the machinery's own noise).
trace_malloc:
  * tm_ratio: the seed's block (8 x 1 MiB strings) under TraceMalloc vs the
    same block untraced.
Run: make bench   (or: .venv/bin/python bench/run_all.py snapshots)
"""
import os
import re
import statistics
import sys
import tempfile
import time

from pymemtrace import debug_malloc_stats, trace_malloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from buildmod import load_build_module  # noqa: E402

# bench/ext/_mallocstats_bench.c: the timing helpers (not in the shipped module)
_mallocstats = load_build_module("_mallocstats_bench")

RUNS = 7
N = 400

_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
_VALUE = re.compile(r"^(.*?)\s*=\s*([\d,]+)\s*$")


def _parse_python(text):
    """A straightforward Python parser of the text (the original's way)."""
    classes, values = {}, {}
    for line in text.splitlines():
        m = _ROW.match(line)
        if m:
            idx, size, pools, used, avail = map(int, m.groups())
            classes[idx] = (size, pools, used, avail)
            continue
        m = _VALUE.match(line)
        if m:
            values[m.group(1).strip()] = int(m.group(2).replace(",", ""))
    return classes, values


class _Fd2Snapshotter:
    """Redirect fd 2 to a (reused) temporary file around sys._debugmallocstats()."""

    def __init__(self):
        self.file = tempfile.TemporaryFile(mode="w+")

    def snapshot(self):
        sys.stderr.flush()
        self.file.seek(0)
        self.file.truncate()
        saved = os.dup(2)
        try:
            os.dup2(self.file.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        self.file.seek(0)
        return _parse_python(self.file.read())

    def close(self):
        self.file.close()


def _median_us(fn, n=N):
    samples = []
    for _ in range(RUNS):
        samples.append(fn(n) / n / 1000.0)
    return statistics.median(samples)


def _py_loop_ns(fn):
    def timed(n):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        return time.perf_counter_ns() - t0
    return timed


def _noise(before_classes, after_classes):
    keys = set(before_classes) | set(after_classes)
    return sum(abs(after_classes.get(k, (0, 0, 0, 0))[2] - before_classes.get(k, (0, 0, 0, 0))[2])
               for k in keys)


def _seed_block():
    keep = []
    for i in range(8):
        keep.append(' ' * 1024**2)
    return keep


def run() -> dict:
    res = {}
    # Writer and snapshot are timed in interleaved rounds and compared round
    # by round (median of the per-round ratios), so that load from other
    # processes on the machine hits both alike.
    devnull, memstream, snaps, ratios = [], [], [], []
    n = N // 8
    for _ in range(5 * RUNS):
        d = _mallocstats._time_writer(n, "devnull") / n / 1000.0
        m = _mallocstats._time_writer(n, "memstream") / n / 1000.0
        s = _mallocstats._time_snapshot(n) / n / 1000.0
        devnull.append(d)
        memstream.append(m)
        snaps.append(s)
        # against the faster way of running the writer alone (the stricter ratio)
        ratios.append(s / min(d, m))
    res["writer_devnull_us"] = statistics.median(devnull)
    res["writer_memstream_us"] = statistics.median(memstream)
    res["snapshot_us"] = statistics.median(snaps)
    res["snapshot_vs_writer"] = statistics.median(ratios)

    d = debug_malloc_stats.DiffSysDebugMallocStats()
    with d:
        keep = [1j * i for i in range(100)]
    res["diff_us"] = _median_us(_mallocstats._time_diff, 5000)
    res["diff_py_us"] = _median_us(_py_loop_ns(d.diff), 5000)

    def with_block():
        with debug_malloc_stats.DiffSysDebugMallocStats() as x:
            pass
        x.diff()
    res["with_block_us"] = _median_us(_py_loop_ns(with_block), 200)

    fd2 = _Fd2Snapshotter()
    try:
        res["fd2_python_us"] = _median_us(_py_loop_ns(fd2.snapshot), 200)
        res["fd2_python_vs_writer"] = res["fd2_python_us"] / min(res["writer_devnull_us"],
                                                                 res["writer_memstream_us"])
        noise = []
        for _ in range(RUNS):
            a = b = None            # nothing of the last pair alive during the first snapshot
            a = fd2.snapshot()[0]
            b = fd2.snapshot()[0]
            noise.append(_noise(a, b))
        res["noise_blocks_fd2_python"] = statistics.median(noise)
    finally:
        fd2.close()
    noise = []
    for _ in range(RUNS):
        e = debug_malloc_stats.DiffSysDebugMallocStats()
        with e:
            pass
        noise.append(sum(abs(c.blocks_in_use) for c in e.size_class_deltas().values()))
    res["noise_blocks_ours"] = statistics.median(noise)

    # trace_malloc: the seed's block traced vs untraced, same run.
    def untraced(n):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            _seed_block()
        return time.perf_counter_ns() - t0

    def traced(n):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            with trace_malloc.TraceMalloc('filename'):
                _seed_block()
        return time.perf_counter_ns() - t0
    res["tm_untraced_us"] = _median_us(untraced, 20)
    res["tm_traced_us"] = _median_us(traced, 20)
    res["tm_ratio"] = res["tm_traced_us"] / res["tm_untraced_us"]
    del keep
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
