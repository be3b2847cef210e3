"""The original pymemtrace's own test suite passes against this package.

Its tests/ (from its pinned release sdist, see scripts/original_suite.py) run
unchanged, minus tests/original_suite/deselect.txt, in a subprocess under this
interpreter and its installed pymemtrace.  Skipped with the reason when the
sdist cannot be obtained (no network, no pip).
"""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "original_suite.py"


def _load_runner():
    spec = importlib.util.spec_from_file_location("original_suite", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_original_suite_passes(tmp_path):
    runner = _load_runner()
    try:
        status, output = runner.run(sys.executable, [], run_dir=tmp_path)
    except runner.Unavailable as e:
        pytest.skip(f"the original's tests cannot be obtained: {e}")
    summary = output.strip().splitlines()[-1] if output.strip() else "(no output)"
    assert status == 0, f"the original's suite failed: {summary}\n" + output[-6000:]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|error|errors)", summary)}
    assert not counts.get("failed") and not counts.get("error") and not counts.get("errors"), summary
    # Most of it runs on every version (the ReferenceTracing tests only on 3.13+).
    assert counts.get("passed", 0) >= 100, summary
