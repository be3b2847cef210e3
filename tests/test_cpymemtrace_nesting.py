"""cPyMemTrace nested and beside others: nested profiles stack (DETACH/RESUME notes),
Profile and Trace together, out-of-order exits, a foreign profiler restored; threads
each with their own log or none; a forked child never writes into the parent's log."""
import os
import pathlib
import re
import sys
import threading

import pytest

from pymemtrace import cPyMemTrace
from pymemtrace.readers import cpmt_log

from cpymemtrace_helpers import (MIB, NAME, needs_fixed_mmap, in_fresh_interpreter,
                                create_string, seed_block, steps_on_create_string,
                                other_thread_work)
from cpymemtrace_helpers import _in_tmp_cwd  # noqa: F401  (autouse fixture)


# ---- nesting ------------------------------------------------------------------------------

@needs_fixed_mmap
@in_fresh_interpreter
def test_nested_profiles_stack_and_notes():
    assert cPyMemTrace.profile_wrapper_depth() == 0
    with cPyMemTrace.Profile() as outer:
        assert cPyMemTrace.profile_wrapper_depth() == 1
        create_string(MIB)
        with cPyMemTrace.Profile() as inner:
            assert cPyMemTrace.profile_wrapper_depth() == 2
            assert cPyMemTrace.profile_log_path() == inner.log_path
            seed_block()
        assert cPyMemTrace.profile_wrapper_depth() == 1
        assert cPyMemTrace.profile_log_path() == outer.log_path
        create_string(MIB)
    assert cPyMemTrace.profile_wrapper_depth() == 0
    assert NAME.match(os.path.basename(outer.log_path)).group(3) == "1"
    assert NAME.match(os.path.basename(inner.log_path)).group(3) == "2"
    out = cpmt_log.read(outer.log_path)
    inn = cpmt_log.read(inner.log_path)
    assert out.complete and inn.complete
    notes = [t for _, t in out.notes]
    assert re.match(r"^# DETACH event=\d+ clock=\d+\.\d{6} depth=2 log=" + re.escape(inner.log_path)
                    + "$", notes[0])
    assert re.match(r"^# RESUME event=\d+ clock=\d+\.\d{6}$", notes[1])
    assert notes[-1].startswith("# END ")
    # the inner block's work is in the inner log only
    assert len(steps_on_create_string(inn)) == 8
    assert not [r for r in out.records if r.function in ("seed_block", "append")]
    detach_ev = int(re.search(r"event=(\d+)", notes[0]).group(1))
    resume_ev = int(re.search(r"event=(\d+)", notes[1]).group(1))
    assert detach_ev == resume_ev   # the outer saw no event while detached


def test_profile_and_trace_together():
    with cPyMemTrace.Profile(0, filepath="p.log"):
        with cPyMemTrace.Trace(0, filepath="t.log"):
            assert cPyMemTrace.profile_wrapper_depth() == 1
            assert cPyMemTrace.trace_wrapper_depth() == 1
            create_string(10)
    assert any(r.function == "create_string" for r in cpmt_log.read("p.log").records)
    assert any(r.what == "LINE" for r in cpmt_log.read("t.log").records)


def test_inner_exits_after_outer_leaves_nothing_attached():
    outer = cPyMemTrace.Profile(filepath="o.log")
    inner = cPyMemTrace.Profile(filepath="i.log")
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)        # out of order
    inner.__exit__(None, None, None)
    assert sys.getprofile() is None
    assert cpmt_log.read("o.log").complete and cpmt_log.read("i.log").complete


def test_restores_a_foreign_profiler():
    seen = []

    def foreign(frame, event, arg):
        seen.append(event)

    sys.setprofile(foreign)
    try:
        with cPyMemTrace.Profile(filepath="p.log"):
            create_string(10)
        assert sys.getprofile() is foreign
    finally:
        sys.setprofile(None)


# ---- threads and fork ---------------------------------------------------------------------


def test_other_threads_run_undisturbed():
    result = {}

    def worker():
        result["profile"] = sys.getprofile()
        result["depth"] = cPyMemTrace.profile_wrapper_depth()
        result["path"] = cPyMemTrace.profile_log_path()
        result["value"] = len(other_thread_work(1000))

    with cPyMemTrace.Profile(0, filepath="main.log"):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        create_string(10)
    assert result == {"profile": None, "depth": 0, "path": None, "value": 1000}
    funcs = {r.function for r in cpmt_log.read("main.log").records}
    assert "create_string" in funcs and "other_thread_work" not in funcs and "worker" not in funcs


def test_each_thread_its_own_profile():
    def worker(i):
        with cPyMemTrace.Profile(0, filepath=f"t{i}.log"):
            assert cPyMemTrace.profile_wrapper_depth() == 1
            other_thread_work(50 + i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    with cPyMemTrace.Profile(0, filepath="main.log"):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for i in range(3):
        log = cpmt_log.read(f"t{i}.log")
        assert log.complete
        calls = [r for r in log.records if r.what == "CALL" and r.function == "create_string"]
        assert len(calls) == 50 + i
    main = cpmt_log.read("main.log")
    assert not [r for r in main.records if r.function in ("create_string", "worker")]


def child_only_function():
    return create_string(10)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_never_writes_into_the_parents_log():
    with cPyMemTrace.Profile(0, filepath="p.log") as p:
        create_string(10)
        pid = os.fork()
        if pid == 0:    # child: well over a buffer's worth of events, then both ways out
            try:
                for _ in range(5000):
                    child_only_function()
                cPyMemTrace.profile_write_message_to_log("from the child")
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        create_string(20)
    text = pathlib.Path(p.log_path).read_text()
    assert "child_only_function" not in text and "from the child" not in text
    log = cpmt_log.read(p.log_path)
    assert log.complete
    assert [r.event for r in log.records] == list(range(len(log.records)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_flushes_the_parents_rows_first():
    with cPyMemTrace.Profile(0, filepath="p.log"):
        create_string(10)
        assert "create_string" not in pathlib.Path("p.log").read_text()   # still buffered
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        assert "create_string" in pathlib.Path("p.log").read_text()       # on disk at fork
    assert cpmt_log.read("p.log").complete


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_leaving_the_block_does_not_write():
    with cPyMemTrace.Profile(0, filepath="p.log") as p:
        pid = os.fork()
        if pid == 0:
            child_only_function()
        create_string(10)
    if pid == 0:
        os._exit(0)     # the child left the with-block: its __exit__ ran, and wrote nothing
    os.waitpid(pid, 0)
    text = pathlib.Path(p.log_path).read_text()
    assert "child_only_function" not in text
    assert text.count("# END ") == 1
