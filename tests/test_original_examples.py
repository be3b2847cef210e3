"""pymemtrace.examples: each example runs as `python -m pymemtrace.examples.NAME`."""
import subprocess
import sys

import pytest

from pymemtrace import reference_tracing

EXAMPLES = {
    "ex_trace_malloc": "tracemalloc says it allocated 8,",
    "ex_debug_malloc_stats": "blocks in use",
    "ex_cPyMemTrace": "wrote its log",
    "ex_cPyMemTrace_RefTrace": ("LIVE:       1 Record" if reference_tracing.AVAILABLE
                                else "needs CPython 3.13"),
    "ex_memory_exercise": "allocated and released",
    "ex_process": "allocated block 4",
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name, tmp_path):
    args = [sys.executable, "-m", f"pymemtrace.examples.{name}"]
    if name == "ex_memory_exercise":
        args += ["--size", "4096", "--count", "2", "--pause", "0"]
    out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert EXAMPLES[name] in out.stdout + out.stderr
