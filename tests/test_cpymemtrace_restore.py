"""cPyMemTrace under code that saves and restores the thread's profile / trace function
(``sys.settrace(sys.gettrace())``, as test.support, coverage tools and debuggers do):
tracing goes on, the C function comes back, and the tracer called as a Python-level
function records the event it is given.  This is the legacy backend (the only one
before 3.12; ``set_backend('legacy')`` after); on sys.monitoring the tracer is not the
thread's function at all: test_cpymemtrace_monitoring.py."""
import sys
import threading

import pytest

from pymemtrace import cPyMemTrace
from pymemtrace.readers import cpmt_log

_outer_trace = sys.gettrace()   # pytest-cov or a debugger may have one


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old = cPyMemTrace.set_backend("legacy")
    yield
    cPyMemTrace.set_backend(old)
    assert sys.getprofile() is None and sys.gettrace() in (None, _outer_trace)
    assert cPyMemTrace.profile_wrapper_depth() == 0
    assert cPyMemTrace.trace_wrapper_depth() == 0


def after_restore(n):
    return n + 1


def _functions(path, what):
    return [r.function for r in cpmt_log.read(path).records if r.what == what]


def test_setprofile_of_getprofile_keeps_profiling():
    with cPyMemTrace.Profile(0, filepath="p.log") as p:
        sys.setprofile(sys.getprofile())
        # The C function is back: the thread's profiler is this Profile again.
        assert cPyMemTrace.profile_wrapper_depth() == 1
        assert cPyMemTrace.profile_log_path() == p.log_path
        assert sys.getprofile() is p
        after_restore(1)
    assert sys.getprofile() is None
    calls = _functions("p.log", "CALL")
    assert "after_restore" in calls
    assert "setprofile" in _functions("p.log", "C_CALL")
    assert cpmt_log.read("p.log").complete


def test_settrace_of_gettrace_keeps_tracing():
    with cPyMemTrace.Trace(0, filepath="t.log") as t:
        sys.settrace(sys.gettrace())
        after_restore(1)      # the next call event puts the C function back
        assert cPyMemTrace.trace_wrapper_depth() == 1
        assert sys.gettrace() is t
        after_restore(2)
    log = cpmt_log.read("t.log")
    assert log.complete
    # Both calls are logged, each with its line and return.
    assert _functions("t.log", "CALL").count("after_restore") == 2
    assert _functions("t.log", "RETURN").count("after_restore") == 2
    assert "after_restore" in _functions("t.log", "LINE")


def test_save_none_restore_pattern_of_test_support():
    # test.support.no_tracing: settrace(None) ... settrace(original)
    with cPyMemTrace.Trace(0, filepath="t.log") as t:
        original = sys.gettrace()
        assert original is t
        sys.settrace(None)
        after_restore(0)          # not traced
        sys.settrace(original)
        after_restore(1)
        after_restore(2)
        assert cPyMemTrace.trace_wrapper_depth() == 1
    assert _functions("t.log", "CALL").count("after_restore") == 2


def test_profile_restored_in_a_nested_context_resumes_the_outer_log():
    with cPyMemTrace.Profile(0, filepath="outer.log"):
        with cPyMemTrace.Profile(0, filepath="inner.log") as inner:
            sys.setprofile(sys.getprofile())
            after_restore(1)
            assert sys.getprofile() is inner
        after_restore(2)
    assert "after_restore" in _functions("inner.log", "CALL")
    assert "after_restore" in _functions("outer.log", "CALL")
    assert any(text.startswith("# RESUME") for _, text in cpmt_log.read("outer.log").notes)


def test_calling_a_profile_records_one_event_and_returns_none():
    frame = sys._getframe()
    with cPyMemTrace.Profile(0, filepath="p.log") as p:
        before = p.events
        r = p(frame, "call", None)
        assert p.events - before == 1    # calling an object is no C_CALL event: only this one
        assert r is None
    rows = [r for r in cpmt_log.read("p.log").records
            if r.function == "test_calling_a_profile_records_one_event_and_returns_none"]
    assert [r.what for r in rows] == ["CALL"]


def test_calling_a_trace_returns_itself_as_the_local_trace_function():
    frame = sys._getframe()
    with cPyMemTrace.Trace(0, filepath="t.log") as t:
        before = t.events
        assert t(frame, "line", None) is t
        assert t.events > before
    # After exit, or before enter: nothing recorded, None returned.
    events = t.events
    assert t(frame, "line", None) is None
    assert t.events == events
    assert cPyMemTrace.Trace()(frame, "call", None) is None


def test_a_chaining_trace_function_keeps_the_tracer_recording():
    # A debugger that chains to the function it displaced.
    seen = []
    with cPyMemTrace.Trace(0, filepath="t.log") as t:
        old = sys.gettrace()

        def chain(frame, event, arg):
            seen.append(event)
            local = old(frame, event, arg)
            return chain if local is not None else None

        sys.settrace(chain)
        after_restore(1)
        sys.settrace(old)
    assert "call" in seen
    assert _functions("t.log", "CALL").count("after_restore") == 1
    assert _functions("t.log", "LINE").count("after_restore") == 1


def test_called_on_another_thread_records_nothing():
    frame = sys._getframe()
    out = {}
    with cPyMemTrace.Profile(0, filepath="p.log") as p:
        th = threading.Thread(target=lambda: out.setdefault("r", p(frame, "call", None)))
        before = p.events
        th.start()
        th.join()
        out["delta"] = p.events - before
    assert out["r"] is None
    # Only the calls this thread made (Thread.start and join), not the other thread's.
    assert not any(r.function == "<lambda>" for r in cpmt_log.read("p.log").records)


@pytest.mark.parametrize("args, error, words", [
    ((None, "call"), TypeError, "expected 3 arguments"),
    ((1, "call", None), TypeError, "frame must be a frame or None, not int"),
    ((None, "start", None), ValueError, "event must be one of"),
    ((None, b"call", None), ValueError, "event must be one of"),
])
def test_bad_arguments_are_refused_with_one_clear_line(args, error, words):
    with cPyMemTrace.Profile(filepath="p.log") as p:
        with pytest.raises(error, match=words):
            p(*args)
    with pytest.raises(TypeError, match="no keyword arguments"):
        cPyMemTrace.Trace()(None, "call", None, x=1)
