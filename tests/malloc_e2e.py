"""Test helper for test_malloc.py and the files split from it: run a script under
`pymemtrace malloc` (`trace`, `cli` with a cwd), find a line by its `# MARKER` comment
(`line_of` in a file, `line_in` in a text), the Python sites of one script in a report,
and what skips tests that cannot run under `make sanitize` (SANITIZE): the marks
`needs_preload` and `skip_under_asan(reason)`, and `skip_if_sanitized()` for a fixture.
The other malloc test files and test_pytest_plugin.py use these too."""
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

SANITIZE = os.environ.get("PYMEMTRACE_SANITIZE") == "1"   # set by `make sanitize`
PRELOAD_UNDER_ASAN = ("the preload library is not meant to run under ASan's own malloc "
                      "interposition")


def skip_under_asan(reason=PRELOAD_UNDER_ASAN):
    """Skip under `make sanitize`, saying why."""
    return pytest.mark.skipif(SANITIZE, reason=reason)


needs_preload = skip_under_asan(PRELOAD_UNDER_ASAN + " (its core C is sanitized through tests/c)")


def skip_if_sanitized():
    """For a fixture that runs the preload library: skip its tests under `make sanitize`."""
    if SANITIZE:
        pytest.skip("the preload library does not run under ASan")

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


def line_in(source, marker):
    """The line of `source` (a text, dedented or not: the same lines) carrying the
    comment '# MARKER' (a whole word)."""
    for i, text in enumerate(source.splitlines(), 1):
        if re.search(r"# " + re.escape(marker) + r"(\s|$)", text):
            return i
    raise AssertionError(marker)


def line_of(script, marker):
    """The line of the file `script` carrying the comment '# MARKER' (a whole word)."""
    return line_in(pathlib.Path(script).read_text(), marker)


def in_comprehension(enclosing):
    """The function a list comprehension's allocations are attributed to: its own
    `<listcomp>` frame before 3.12, the enclosing function since (PEP 709 inlines it)."""
    return "<listcomp>" if sys.version_info < (3, 12) else enclosing


def sites(report, script, function=None):
    return [s for s in report["by_python_site"]
            if s["file"] == str(script) and (function is None or s["function"] == function)]
