"""Test helper for test_malloc.py and the files split from it: run a script under
`pymemtrace malloc` (`trace`, `cli` with a cwd), find a line by its `# MARKER` comment,
the Python sites of one script in a report, and the mark for tests that need the
preload library (not under `make sanitize`)."""
import os
import re
import subprocess
import sys
import textwrap

import pytest

SANITIZE = os.environ.get("PYMEMTRACE_SANITIZE") == "1"
needs_preload = pytest.mark.skipif(
    SANITIZE, reason="the preload library is not meant to run under ASan's own malloc "
                     "interposition (its core C is sanitized through tests/c)")

PY = sys.executable


def cli(*args, cwd=None, check=False):
    p = subprocess.run([PY, "-m", "pymemtrace", "malloc", *args], capture_output=True,
                       text=True, cwd=cwd)
    if check and p.returncode != 0:
        raise AssertionError(f"rc={p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def trace(tmp_path, source, *extra, name="w.py", out="w.cap"):
    script = tmp_path / name
    script.write_text(textwrap.dedent(source))
    cap = tmp_path / out
    p = cli("-o", str(cap), *extra, "--", PY, str(script), cwd=tmp_path)
    return p, cap, script


def line_of(script, marker):
    """The line carrying the comment '# MARKER' (a whole word)."""
    for i, text in enumerate(script.read_text().splitlines(), 1):
        if re.search(r"# " + re.escape(marker) + r"(\s|$)", text):
            return i
    raise AssertionError(marker)


def in_comprehension(enclosing):
    """The function a list comprehension's allocations are attributed to: its own
    `<listcomp>` frame before 3.12, the enclosing function since (PEP 709 inlines it)."""
    return "<listcomp>" if sys.version_info < (3, 12) else enclosing


def sites(report, script, function=None):
    return [s for s in report["by_python_site"]
            if s["file"] == str(script) and (function is None or s["function"] == function)]
