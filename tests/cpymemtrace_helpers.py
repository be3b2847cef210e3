"""Test helper for the test_cpymemtrace*.py files: the log-name pattern and header, the
seed's block of eight 1 MiB strings, the fixture every test runs in (a fresh cwd, nothing
left attached), and the marks for tests that count RSS steps (fixed mmap threshold, a
fresh interpreter)."""
import ctypes
import ctypes.util
import functools
import os
import pathlib
import re
import subprocess
import sys

import pytest

from pymemtrace import cPyMemTrace


MIB = 1024 ** 2
NAME = re.compile(r"^\d{8}_\d{6}_(\d+)_([PT])_(\d+)_PY" + re.escape(sys.version.split()[0])
                  + r"(-\d+)?\.log$")
HEADER = "      Event dEvent  Clock    What     File    #line Function      RSS           dRSS"


def _fix_mmap_threshold():
    """glibc raises its mmap threshold after large frees, so in a long-lived process a
    later 1 MiB block may reuse resident heap memory and not move RSS at all.  A fixed
    threshold (which also turns the adjustment off) makes every 1 MiB block its own
    mapping, as in a fresh process; the seed's examples also run in fresh processes."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except AttributeError:
        return False
    M_MMAP_THRESHOLD = -3
    return mallopt(M_MMAP_THRESHOLD, 256 * 1024) == 1


# mimalloc (PYTHONMALLOC=mimalloc on 3.13) maps and keeps its own segments: a 1 MiB string
# neither comes from glibc nor gives its pages back when freed.
GLIBC_LARGE_BLOCKS = not (os.environ.get("PYTHONMALLOC", "").startswith("mimalloc")
                          and not sys.flags.ignore_environment)
FIXED_MMAP = GLIBC_LARGE_BLOCKS and _fix_mmap_threshold()
SANITIZED = bool(os.environ.get("PYMEMTRACE_SANITIZE"))   # set by `make sanitize`
needs_fixed_mmap = pytest.mark.skipif(
    not FIXED_MMAP, reason="needs glibc's mallopt so that each 1 MiB block moves RSS")


FRESH_ENV = "PYMEMTRACE_TEST_FRESH"


def in_fresh_interpreter(test):
    """Tests that count the seed's eight 1 MiB RSS steps run in an interpreter of their
    own, as the seed's examples do.  RSS is the whole process's: in the long pytest
    process one step in a thousand was moved by memory that something else in the
    process returned or took during that step (seen on 3.12 and 3.13 in full runs,
    never when the file runs alone), and no retry in the same process fixes that.
    The child runs just this test (its fixtures too) and its outcome is this test's."""
    path = test.__code__.co_filename     # the test's own file, not this helper

    @functools.wraps(test)
    def run(*args, **kwargs):
        if os.environ.get(FRESH_ENV) == test.__name__:
            return test(*args, **kwargs)
        tmp = kwargs.get("tmp_path") or pathlib.Path.cwd()
        env = dict(os.environ, **{FRESH_ENV: test.__name__})
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             f"--basetemp={tmp / 'fresh'}", f"{path}::{test.__name__}"],
            cwd=os.path.dirname(path), env=env, capture_output=True, text=True,
            timeout=300)
        if r.returncode != 0 or not re.search(r"^1 passed", r.stdout, re.M):
            pytest.fail(f"{test.__name__} in a fresh interpreter: exit {r.returncode}\n"
                        f"{r.stdout[-6000:]}\n{r.stderr[-2000:]}", pytrace=False)
    return run


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield
    assert sys.getprofile() is None and sys.gettrace() in (None, _outer_trace)
    assert cPyMemTrace.profile_wrapper_depth() == 0
    assert cPyMemTrace.trace_wrapper_depth() == 0


_outer_trace = sys.gettrace()   # pytest-cov or a debugger may have one


def create_string(n: int) -> str:
    return ' ' * n


def seed_block():
    l = []
    for i in range(8):
        l.append(create_string(1024**2))
    while len(l):
        l.pop()


def logs(kind="P"):
    return sorted(p for p in pathlib.Path.cwd().iterdir() if NAME.match(p.name)
                  and NAME.match(p.name).group(2) == kind)


def steps_on_create_string(log):
    return [r for r in log.next_records
            if r.function == "create_string" and r.d_rss >= MIB and r.event != 0]


def other_thread_work(n):
    return [create_string(100) for _ in range(n)]
