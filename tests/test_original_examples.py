"""pymemtrace.examples: each example runs as `python -m pymemtrace.examples.NAME`."""
import os
import subprocess
import sys

import pytest

from pymemtrace import bpftrace_run, reference_tracing

EXAMPLES = {
    "ex_trace_malloc": "tracemalloc says it allocated 8,",
    "ex_debug_malloc_stats": "blocks in use",
    "ex_cPyMemTrace": "wrote its log",
    "ex_cPyMemTrace_RefTrace": ("LIVE:       1 Record" if reference_tracing.AVAILABLE
                                else "needs CPython 3.13"),
    "ex_memory_exercise": "allocated and released",
    "ex_process": "allocated block 4",
    "example": "example: 3 rounds",
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name, tmp_path):
    args = [sys.executable, "-m", f"pymemtrace.examples.{name}"]
    if name == "ex_memory_exercise":
        args += ["--size", "4096", "--count", "2", "--pause", "0"]
    out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert EXAMPLES[name] in out.stdout + out.stderr


def test_ex_process_decorator_logs_labels():
    out = subprocess.run([sys.executable, "-m", "pymemtrace.examples.ex_process_decorator"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert '"label": "holding 4 x 16,777,216 bytes"' in out.stdout
    assert out.stdout.count("ProcessLoggingThread-JSON-START") == 1


def test_ex_process_tree_shows_the_workers():
    out = subprocess.run([sys.executable, "-m", "pymemtrace.examples.ex_process_tree"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "3 tasks in 3 processes held" in out.stdout
    pids = {w[1] for w in map(str.split, out.stdout.splitlines()[1:]) if len(w) > 2 and w[1].isdigit()}
    assert len(pids) >= 4       # this process and its three workers


def test_ex_dtrace_traces_or_says_why_not(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pymemtrace.examples.ex_dtrace"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    reason = bpftrace_run.live_unavailable_reason()
    if reason is not None:
        assert out.returncode == 1 and "ex_dtrace: cannot trace here: needs" in out.stderr
        pytest.skip(f"bpftrace cannot run here: {reason}")
    assert out.returncode == 0, out.stderr
    assert "Allocations:" in out.stdout and "Still allocated at exit, by function:" in out.stdout


def test_ex_dtrace_without_bpftrace_says_so(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "pymemtrace.examples.ex_dtrace"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "ex_dtrace: cannot trace here: needs" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
