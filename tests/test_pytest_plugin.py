"""The pytest plugin (issue 14): limit_memory / limit_leaks, --pymemtrace, its summary.

The limits are checked on real captures: first on ones written by the preload
tracer (``pymemtrace malloc --paused`` with ``Tracing`` around a "test body"),
then end to end: pytest runs (subprocesses, in a temporary directory) of small
test files, tracked by ``pymemtrace.malloc.Tracker``.
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

import pymemtrace.malloc
from pymemtrace.readers.malloc_stacks import load_stacks
from pymemtrace.reporters import memory_limits as ml
from malloc_e2e import line_in, skip_under_asan

needs_tracer = skip_under_asan(
    "the malloc tracer is not meant to run under ASan's own malloc interposition")
needs_tracker = pytest.mark.skipif(
    not hasattr(pymemtrace.malloc, "Tracker"),
    reason="pymemtrace.malloc.Tracker (in-process tracking, issue 14) is not in this build")


@pytest.mark.parametrize("text, expected", [
    ("24 MB", 24 << 20), ("24MB", 24 << 20), ("24 mb", 24 << 20), ("1 KB", 1024),
    ("1.5 kB", 1536), (".5 GB", 1 << 29), ("+2 TB", 2 << 40), ("1 PB", 1 << 50),
    ("100 B", 100), ("0B", 0), ("  3 MB ", 3 << 20), (4096, 4096),
])
def test_sizes_are_pytest_memrays(text, expected):
    # a number, optional spaces, a unit in any case; powers of 1024
    assert ml.parse_size(text) == expected


@pytest.mark.parametrize("text", ["24", "24 XB", "24 MiB", "MB", "lots", "-1 MB", "1,5 MB",
                                  "1 MB extra", "", -5, 2.5, None, True])
def test_a_bad_size_is_one_line_naming_it(text):
    with pytest.raises(ValueError) as e:
        ml.parse_size(text)
    assert repr(text) in str(e.value) and "\n" not in str(e.value)


BODY = """\
    from pymemtrace.malloc import Tracing
    keep = []
    # pymalloc arenas with free pools before the block, so that its small objects
    # need no new arena (an arena's mmap is charged to whichever line needed it:
    # which line differs by version, 256 KiB arenas on 3.9, 1 MiB later)
    warm = [bytearray(0) for _ in range(100_000)][::2000]

    def make(n):
        return [bytearray(100_000) for _ in range(n)]  # MAKE

    def test_body():
        big = make(50)  # CALL
        keep.append(bytearray(300_000))  # KEEP
        keep.append([bytearray(1000) for _ in range(20)])  # SMALL
        del big

    with Tracing():
        test_body()
    """


@pytest.fixture(scope="module")
def body_capture(tmp_path_factory):
    """A capture of BODY's test_body: 5 MB at its peak, 300 KB kept by one line."""
    d = tmp_path_factory.mktemp("limits")
    prog, cap = d / "body.py", d / "body.cap"
    prog.write_text(textwrap.dedent(BODY))
    subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", "--paused", "--stacks",
                    "-o", str(cap), "--", sys.executable, str(prog)],
                   check=True, capture_output=True)
    return str(prog), load_stacks(str(cap), points=0)


@needs_tracer
def test_peak_over_the_limit_names_the_stacks_live_at_the_peak(body_capture):
    prog, r = body_capture
    assert ml.check_peak(r, ml.parse_size("24 MB"), "24 MB") is None
    p = ml.check_peak(r, ml.parse_size("1 MB"), "1 MB", test=(prog, "test_body"))
    assert p.summary.startswith("peak memory ")
    assert "is over limit_memory('1 MB') = 1.0 MiB" in p.summary
    first = p.details.split("  #2")[0]
    assert re.search(r"#1 4\.[78] MiB \(5,000,\d+ bytes\) in 50 blocks", first), first
    assert f"make ({prog}:{line_in(BODY, 'MAKE')})" in first
    # the stack ends at the test function: what called it is the runner's business
    assert first.rstrip().endswith(f"test_body ({prog}:{line_in(BODY, 'CALL')})")
    assert "<module>" not in first


@needs_tracer
def test_leaks_are_per_stack(body_capture):
    prog, r = body_capture
    p = ml.check_leaks(r, ml.parse_size("200 KB"), "200 KB", test=(prog, "test_body"))
    assert "1 stack leaked more than limit_leaks('200 KB') = 200.0 KiB per stack" in p.summary
    assert "#1 293.0 KiB (300,001 bytes) in 1 block\n" in p.details
    assert f"test_body ({prog}:{line_in(BODY, 'KEEP')})" in p.details
    assert "#2" not in p.details        # the 20 KB of small buffers are under the limit
    assert ml.check_leaks(r, ml.parse_size("400 KB"), "400 KB") is None


@needs_tracer
def test_leak_filter_sees_pytest_memrays_stack_and_can_drop_it(body_capture):
    prog, r = body_capture
    seen = []

    def keep_none(stack):
        seen.append(stack)
        return False

    assert ml.check_leaks(r, 200 << 10, "200 KB", filter_fn=keep_none) is None
    [stack] = seen
    assert stack.frames[0] == ml.StackFrame("test_body", prog, line_in(BODY, "KEEP"))
    assert stack.frames[-1].function == "<module>"      # the whole stack, innermost first


# -- the plugin, in pytest runs of small test files ----------------------------------------

def run_pytest(tmp_path, source, *args, conftest=None):
    """Run pytest on `source` (test_mem.py) in tmp_path; TMPDIR is tmp_path/tmp."""
    (tmp_path / "test_mem.py").write_text(textwrap.dedent(source))
    if conftest:
        (tmp_path / "conftest.py").write_text(textwrap.dedent(conftest))
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA",
                           "test_mem.py", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)


STATE = """\
    import json, sys
    def pytest_sessionfinish(session):
        pm = session.config.pluginmanager
        with open("state.json", "w") as f:
            json.dump({"plugin": pm.has_plugin("pymemtrace"),
                       "tracking": pm.has_plugin("pymemtrace-manager"),
                       "tracker_imported": "pymemtrace.malloc" in sys.modules}, f)
    """


def test_the_plugin_is_installed_and_does_nothing_unless_asked(tmp_path):
    r = run_pytest(tmp_path, """\
        def test_a():
            x = bytearray(5_000_000)
        def test_b():
            pass
        """, conftest=STATE)
    assert r.returncode == 0, r.stdout + r.stderr
    state = json.loads((tmp_path / "state.json").read_text())
    assert state == {"plugin": True, "tracking": False, "tracker_imported": False}
    assert "pymemtrace:" not in r.stdout     # no summary, no kept captures
    assert list((tmp_path / "tmp").iterdir()) == []       # no capture, no directory


@skip_under_asan("ASan replaces malloc: the Tracker around the marked "
                 "test refuses another allocator (libasan's malloc)")
@needs_tracker
def test_an_untracked_test_beside_a_marked_one_is_left_alone(tmp_path):
    """Tracking one marked test wraps that test's function only, and the
    plugin adds no hook wrapper around every test's call or report: an
    untracked test runs exactly as without the plugin."""
    r = run_pytest(tmp_path, """\
        import pytest
        def _mine(pm, hook):
            m = pm.get_plugin("pymemtrace-manager")
            return [i for i in getattr(pm.hook, hook).get_hookimpls() if i.plugin is m]
        def test_untracked(request):
            pm = request.config.pluginmanager
            assert pm.has_plugin("pymemtrace-manager")
            assert request.node.obj.__code__.co_name == "test_untracked"    # not wrapped
            for hook in ("pytest_pyfunc_call", "pytest_runtest_makereport",
                         "pytest_runtest_call", "pytest_runtest_protocol"):
                assert _mine(pm, hook) == [], hook
            assert not any(i.hookwrapper or i.wrapper
                           for i in _mine(pm, "pytest_runtest_logreport"))
        @pytest.mark.limit_memory("1 GB")
        def test_marked(request):
            assert request.node.obj.__code__.co_name == "traced"            # wrapped
        """)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout


@needs_tracker
def test_a_bad_limit_fails_that_test_naming_it_and_the_text(tmp_path):
    r = run_pytest(tmp_path, """\
        import pytest
        @pytest.mark.limit_memory("24 XB")
        def test_unit():
            pass
        @pytest.mark.limit_leaks("lots")
        def test_text():
            pass
        @pytest.mark.limit_memory("1 MB", warmups=2)
        def test_keyword():
            pass
        def test_fine():
            pass
        """)
    assert r.returncode == 1
    out = r.stdout
    assert "test_mem.py::test_unit: limit_memory('24 XB'): '24 XB' is not a size: expected a " \
           "number and a unit B, KB, MB, GB, TB or PB (powers of 1024)" in out
    assert "test_mem.py::test_text: limit_leaks('lots'): 'lots' is not a size" in out
    assert "test_mem.py::test_keyword: limit_memory: unknown keyword argument 'warmups'" in out
    assert "3 failed, 1 passed" in out
    assert "Traceback" not in out


LIMITS = """\
    import pytest
    keep = []

    def grow(n):
        return [bytearray(1_000_000) for _ in range(n)]  # GROW

    @pytest.mark.limit_memory("4 MB")
    def test_over():
        data = grow(8)  # OVER
        del data

    @pytest.mark.limit_memory("24 MB")
    def test_under():
        data = grow(8)

    @pytest.mark.limit_leaks("1 MB")
    def test_leaks():
        keep.append(bytearray(3_000_000))  # LEAK

    @pytest.mark.limit_leaks("1 MB")
    def test_no_leak():
        for _ in range(10):
            b = bytearray(3_000_000)
            del b

    def test_untracked():
        grow(1)
    """


def run_marked(tmp_path, source, passed, summary, conftest=None):
    """Run `source`, which has tests over their limits: the run fails, the
    tests named in `passed` pass and `summary` ("2 failed, 3 passed") is its
    count.  Returns pytest's output."""
    r = run_pytest(tmp_path, source, conftest=conftest)
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    for name in passed:
        assert re.search(rf"PASSED test_mem.py::{name}\b", out), out
    assert summary in out, out
    return out


def _failure(out, name):
    """The text of test `name`'s entry in the FAILURES section."""
    m = re.search(rf"_+ {name} _+\n(.*?)(?=\n_+ \w+ _+\n|\n=+ )", out, re.S)
    assert m, out
    return m.group(1)


@needs_tracer
@needs_tracker
def test_markers_fail_over_the_limit_with_the_stack_and_pass_under(tmp_path):
    out = run_marked(tmp_path, LIMITS, ["test_under", "test_no_leak", "test_untracked"],
                     "2 failed, 3 passed", conftest=STATE)
    src = "test_mem.py"     # under the rootdir: relative
    over = _failure(out, "test_over")
    assert "is over limit_memory('4 MB') = 4.0 MiB" in over
    assert re.search(r"#1 7\.\d MiB \(8,000,\d+ bytes\) in 8 blocks", over), over
    assert f"grow ({src}:{line_in(LIMITS, 'GROW')})" in over
    assert f"test_over ({src}:{line_in(LIMITS, 'OVER')})" in over
    leak = _failure(out, "test_leaks")
    assert "leaked more than limit_leaks('1 MB') = 1.0 MiB per stack" in leak
    assert f"test_leaks ({src}:{line_in(LIMITS, 'LEAK')})" in leak
    assert "pymemtrace: peak memory by test" not in out        # no summary unless asked
    assert list((tmp_path / "tmp").iterdir()) == []            # temporary captures removed


SIZES = """\
    def test_one():
        a = bytearray(1_000_000)  # ONE

    def test_five():
        a = bytearray(5_000_000)  # FIVE

    def test_ten():
        a = bytearray(10_000_000)  # TEN

    def test_fails():
        a = bytearray(2_000_000)
        raise AssertionError("on purpose")  # no repr of the 2 MB: that would be the peak
    """


@needs_tracer
@needs_tracker
def test_summary_lists_the_tests_with_the_highest_peaks(tmp_path):
    r = run_pytest(tmp_path, SIZES, "--pymemtrace", "--pymemtrace-top", "2")
    out = r.stdout
    assert "pymemtrace: peak memory by test" in out, out + r.stderr
    summary = out.split("pymemtrace: peak memory by test")[1]
    assert "2 of 4 tracked tests, highest peak first" in summary
    names = re.findall(r"leaked  test_mem\.py::(\w+)", summary)
    assert names == ["test_ten", "test_five"]
    assert f"in test_ten (test_mem.py:{line_in(SIZES, 'TEN')})" in summary
    assert list((tmp_path / "tmp").iterdir()) == []


@needs_tracer
@needs_tracker
def test_failed_tests_captures_are_kept_in_the_directory(tmp_path):
    kept = tmp_path / "kept" / "deeper"
    r = run_pytest(tmp_path, LIMITS, "--pymemtrace", f"--pymemtrace-dir={kept}")
    out = r.stdout
    assert r.returncode == 1
    names = sorted(p.name for p in kept.iterdir())
    assert names == ["test_mem.py--test_leaks.cap", "test_mem.py--test_over.cap"]
    assert f"capture kept: pymemtrace malloc report {kept / names[1]}" in _failure(out, "test_over")
    assert f"the captures of 2 failed tests are in {kept}" in out
    rep = subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", "report",
                          str(kept / names[1])], capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr
    assert f"test_mem.py:{line_in(LIMITS, 'GROW')}" in rep.stdout


def test_an_unwritable_directory_is_one_line(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    r = run_pytest(tmp_path, "def test_a(): pass\n", "--pymemtrace", f"--pymemtrace-dir={f}")
    assert r.returncode == 4
    assert f"--pymemtrace-dir {f}: cannot write captures there" in r.stderr


@needs_tracer
@needs_tracker
def test_xdist_workers_track_their_tests_and_the_summary_is_complete(tmp_path):
    pytest.importorskip("xdist", reason="pytest-xdist is not installed")
    source = textwrap.dedent(LIMITS) + "\n" + textwrap.dedent(SIZES)
    r = run_pytest(tmp_path, source, "-n", "2", "-v", "--pymemtrace", "--pymemtrace-top", "0")
    out = r.stdout
    assert "pymemtrace: peak memory by test" in out, out + r.stderr
    summary = out.split("pymemtrace: peak memory by test")[1]
    names = re.findall(r"leaked  test_mem\.py::(\w+)", summary)
    assert sorted(names) == sorted(["test_one", "test_five", "test_ten", "test_fails", "test_over",
                                    "test_under", "test_leaks", "test_no_leak",
                                    "test_untracked"])
    assert names.index("test_ten") < names.index("test_five") < names.index("test_one")
    assert "is over limit_memory('4 MB')" in _failure(out, "test_over")
    assert len(set(re.findall(r"\[gw(\d)\]", out))) == 2       # both workers ran tests


# -- async tests and current_thread_only, end to end ---------------------------------------

# a minimal runner for `async def` tests (no pytest-asyncio: not a test dependency)
ASYNC_RUNNER = """\
    import asyncio, inspect
    import pytest

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(pyfuncitem):
        if not inspect.iscoroutinefunction(pyfuncitem.obj):
            return None
        names = pyfuncitem._fixtureinfo.argnames
        asyncio.run(pyfuncitem.obj(**{n: pyfuncitem.funcargs[n] for n in names}))
        return True
    """

ASYNC = """\
    import asyncio
    import pytest
    keep = []

    def grow(n):
        return [bytearray(1_000_000) for _ in range(n)]  # GROW

    @pytest.mark.limit_memory("4 MB")
    async def test_async_over():
        await asyncio.sleep(0)
        data = grow(8)  # OVER
        await asyncio.sleep(0)
        del data

    @pytest.mark.limit_memory("24 MB")
    async def test_async_under():
        await asyncio.sleep(0)
        data = grow(8)
        await asyncio.sleep(0)

    @pytest.mark.limit_leaks("1 MB")
    async def test_async_leaks():
        await asyncio.sleep(0)
        keep.append(bytearray(3_000_000))  # LEAK

    @pytest.mark.limit_memory("4 MB", current_thread_only=True)
    async def test_async_other_task():
        async def other():
            return grow(8)  # TASK
        held = await asyncio.ensure_future(other())
    """


@needs_tracer
@needs_tracker
def test_async_tests_are_tracked_across_their_awaits(tmp_path):
    out = run_marked(tmp_path, ASYNC, ["test_async_under"], "3 failed, 1 passed",
                     conftest=ASYNC_RUNNER)
    over = _failure(out, "test_async_over")
    assert "is over limit_memory('4 MB') = 4.0 MiB" in over
    assert f"grow (test_mem.py:{line_in(ASYNC, 'GROW')})" in over
    # the stack ends at the coroutine of the test, resumed by the event loop
    first = over.split("  #2")[0]
    assert first.rstrip().endswith(f"test_async_over (test_mem.py:{line_in(ASYNC, 'OVER')})")
    leak = _failure(out, "test_async_leaks")
    assert f"test_async_leaks (test_mem.py:{line_in(ASYNC, 'LEAK')})" in leak
    # another task on the test's loop runs in the test's thread: it counts
    task = _failure(out, "test_async_other_task")
    assert "is over limit_memory('4 MB')" in task
    assert f"other (test_mem.py:{line_in(ASYNC, 'TASK')})" in task


THREADS = """\
    import threading
    import pytest
    keep = []

    def grow(n):
        return [bytearray(1_000_000) for _ in range(n)]  # GROW

    def in_thread(n):
        out = []
        t = threading.Thread(target=lambda: out.append(grow(n)))
        t.start()
        t.join()
        return out

    @pytest.mark.limit_memory("4 MB")
    def test_all_threads():
        held = in_thread(8)

    @pytest.mark.limit_memory("4 MB", current_thread_only=True)
    def test_other_thread_not_counted():
        held = in_thread(8)
        mine = grow(2)

    @pytest.mark.limit_memory("4 MB", current_thread_only=True)
    def test_own_still_counted():
        held = in_thread(8)
        mine = grow(6)  # MINE

    def in_thread_and_gone(n):
        t = threading.Thread(target=lambda: grow(n))
        t.start()
        t.join()

    @pytest.mark.limit_memory("4 MB", current_thread_only=True)
    def test_own_peak_after_the_process_peak():
        in_thread_and_gone(20)      # the process's peak: the test's thread holds nothing
        mine = grow(6)  # AFTER

    @pytest.mark.limit_leaks("1 MB", current_thread_only=True)
    def test_other_thread_leak_not_counted():
        keep.append(in_thread(3))

    @pytest.mark.limit_leaks("1 MB", current_thread_only=True)
    def test_own_leak_counted():
        keep.append(in_thread(3))
        keep.append(bytearray(3_000_000))  # LEAK
    """


@needs_tracer
@needs_tracker
def test_current_thread_only_leaves_other_threads_out(tmp_path):
    out = run_marked(tmp_path, THREADS, ["test_other_thread_not_counted",
                                         "test_other_thread_leak_not_counted"],
                     "4 failed, 2 passed")
    # without the flag the other thread's 8 MB count, with the grow() in that thread
    every = _failure(out, "test_all_threads")
    assert "is over limit_memory('4 MB')" in every
    assert f"grow (test_mem.py:{line_in(THREADS, 'GROW')})" in every
    own = _failure(out, "test_own_still_counted")
    assert re.search(r"peak memory 5\.\d MiB .* is over limit_memory\('4 MB'\)", own), own
    assert f"test_own_still_counted (test_mem.py:{line_in(THREADS, 'MINE')})" in own
    assert "current_thread_only=True" in own
    # the thread's own high-water mark, not what it held at the process's (nothing)
    after = _failure(out, "test_own_peak_after_the_process_peak")
    assert re.search(r"peak memory 5\.\d MiB .*of the test's thread is over limit_memory", after), \
        after
    assert f"test_own_peak_after_the_process_peak (test_mem.py:{line_in(THREADS, 'AFTER')})" \
        in after
    leak = _failure(out, "test_own_leak_counted")
    assert "1 stack leaked more than limit_leaks('1 MB')" in leak
    assert f"test_own_leak_counted (test_mem.py:{line_in(THREADS, 'LEAK')})" in leak
