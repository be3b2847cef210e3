"""cPyMemTrace on sys.monitoring (CPython 3.12+, the default there): the same log as the
legacy profile / trace function, event for event; only the traced thread pays; nesting;
save-and-restore; the tool id; the choice of backend."""
import sys
import threading

import pytest

from pymemtrace import cPyMemTrace
from pymemtrace.readers import cpmt_log

pytestmark = pytest.mark.skipif(sys.version_info < (3, 12),
                                reason="sys.monitoring is CPython 3.12+")

_outer_trace = sys.gettrace()   # pytest-cov or a debugger may have one


@pytest.fixture(autouse=True)
def _on_monitoring_in_tmp_cwd(tmp_path, monkeypatch):
    """Each test starts on the monitoring hook and leaves nothing attached."""
    monkeypatch.chdir(tmp_path)
    old = cPyMemTrace.set_backend("monitoring")
    try:
        yield
    finally:
        cPyMemTrace.set_backend(old)
    assert (cPyMemTrace.profile_wrapper_depth(), cPyMemTrace.trace_wrapper_depth()) == (0, 0)


# ---- a workload with every kind of event ----

def _gen(n):
    for i in range(n):
        yield i
    return n


def _delegate(n):
    r = yield from _gen(n)
    return r


class _Boom(Exception):
    pass


def _raises(x):
    if x:
        raise _Boom(x)
    return x


def _work():
    out = []
    for v in _delegate(3):
        out.append(v)
    total = sum(x for x in _gen(4))
    try:
        _raises(1)
    except _Boom:
        out.append(-1)
    try:
        int("nope")
    except ValueError:
        pass
    n = 5
    while n: n -= 1                             # noqa: E701 (a loop on one line)
    d = {}
    d.setdefault("k", []).append(total)
    s = sorted([3, 1, 2], key=lambda v: -v)
    g = _gen(2)
    next(g)
    g.close()
    out.extend(s)
    return len(out) + len("x" * 10)


def _rows(path):
    log = cpmt_log.read(path)
    assert log.complete
    return [(r.what, r.file, r.line, r.function) for r in log.records]


def _run(kind, backend, name):
    cPyMemTrace.set_backend(backend)
    with getattr(cPyMemTrace, kind)(0, filepath=name):
        _work()
    return _rows(name)


@pytest.mark.parametrize("kind", ["Profile", "Trace"])
def test_same_rows_as_the_legacy_function(kind):
    legacy = _run(kind, "legacy", "legacy.log")
    mon = _run(kind, "monitoring", "mon.log")
    assert len(legacy) > 50
    assert mon == legacy


def test_the_default_backend_is_monitoring_and_the_tool_id_is_held_only_while_active():
    cPyMemTrace.set_backend("monitoring")
    mon = sys.monitoring
    assert all(mon.get_tool(i) != "pymemtrace" for i in range(6))
    with cPyMemTrace.Profile(filepath="p.log"):
        held = [i for i in range(6) if mon.get_tool(i) == "pymemtrace"]
        with cPyMemTrace.Trace(filepath="t.log"):
            assert [i for i in range(6) if mon.get_tool(i) == "pymemtrace"] == held
    assert held and held[0] not in (mon.DEBUGGER_ID, mon.COVERAGE_ID, mon.PROFILER_ID)
    assert all(mon.get_tool(i) != "pymemtrace" for i in range(6))


def test_no_free_tool_id_is_one_clear_error_and_legacy_still_works():
    mon = sys.monitoring
    taken = [i for i in (3, 4, 5) if mon.get_tool(i) is None]
    for i in taken:
        mon.use_tool_id(i, "someone else")
    try:
        with pytest.raises(RuntimeError, match=r"no sys.monitoring tool id is free.*"
                                               r"set_backend\('legacy'\)"):
            cPyMemTrace.Profile(filepath="p.log").__enter__()
        assert cPyMemTrace.profile_wrapper_depth() == 0
        cPyMemTrace.set_backend("legacy")
        with cPyMemTrace.Profile(0, filepath="legacy.log") as p:
            assert sys.getprofile() is p
            _raises(0)
        assert "_raises" in [r.function for r in cpmt_log.read("legacy.log").records]
    finally:
        for i in taken:
            mon.free_tool_id(i)


def test_another_monitoring_tool_and_a_profile_function_run_beside_it():
    mon = sys.monitoring
    seen, prof_seen = [], []
    mon.use_tool_id(mon.COVERAGE_ID, "a coverage tool")
    mon.register_callback(mon.COVERAGE_ID, mon.events.PY_START,
                          lambda code, off: seen.append(code.co_name))
    mon.set_events(mon.COVERAGE_ID, mon.events.PY_START)
    try:
        with cPyMemTrace.Profile(0, filepath="p.log"):
            # getprofile() is not the tracer: the thread's profile slot stays free ...
            assert sys.getprofile() is None
            sys.setprofile(lambda f, e, a: prof_seen.append(e))
            _raises(0)
            sys.setprofile(None)
    finally:
        mon.set_events(mon.COVERAGE_ID, 0)
        mon.register_callback(mon.COVERAGE_ID, mon.events.PY_START, None)
        mon.free_tool_id(mon.COVERAGE_ID)
    assert "_raises" in seen and "call" in prof_seen
    # ... and the tracer saw the call as well.
    assert "_raises" in [r.function for r in cpmt_log.read("p.log").records if r.what == "CALL"]


def after_restore(n):
    return n + 1


def _functions(path, what):
    return [function for kind, _, _, function in _rows(path) if kind == what]


def test_settrace_of_gettrace_and_the_save_none_restore_pattern_keep_tracing():
    with cPyMemTrace.Trace(0, filepath="t.log") as t:
        assert sys.gettrace() in (None, _outer_trace)    # not the tracer: see the README
        sys.settrace(sys.gettrace())
        after_restore(1)
        original = sys.gettrace()
        sys.settrace(None)        # test.support.no_tracing: tracing goes on here
        after_restore(2)
        sys.settrace(original)
        after_restore(3)
        assert cPyMemTrace.trace_wrapper_depth() == 1
        assert cPyMemTrace.trace_log_path() == t.log_path
        assert t(sys._getframe(), "line", None) is None
    assert _functions("t.log", "CALL").count("after_restore") == 3
    assert _functions("t.log", "LINE").count("after_restore") == 3
    with cPyMemTrace.Profile(0, filepath="p.log") as p:
        sys.setprofile(sys.getprofile())
        after_restore(1)
        # Called as a profile function it records nothing: it sees every event already.
        frame = sys._getframe()
        events = p.events
        assert p(frame, "call", None) is None
        assert p.events == events
    assert _functions("p.log", "CALL").count("after_restore") == 1


def _spin(stop, n):
    while not stop.is_set():
        n[0] = after_restore(n[0])


@pytest.mark.parametrize("kind", ["Profile", "Trace"])
def test_only_the_thread_that_entered_is_logged(kind):
    stop, n = threading.Event(), [0]
    other = threading.Thread(target=_spin, args=(stop, n))
    other.start()
    try:
        with getattr(cPyMemTrace, kind)(0, filepath="x.log"):
            before = n[0]
            while n[0] < before + 1000:
                _raises(0)
    finally:
        stop.set()
        other.join()
    functions = {r.function for r in cpmt_log.read("x.log").records}
    assert "_raises" in functions
    assert "after_restore" not in functions and "_spin" not in functions


def test_nested_and_consecutive_tracers():
    with cPyMemTrace.Profile(0, filepath="outer.log") as outer:
        with cPyMemTrace.Profile(0, filepath="inner.log") as inner:
            assert cPyMemTrace.profile_wrapper_depth() == 2 and inner.depth == 2
            after_restore(1)
        after_restore(2)
        assert cPyMemTrace.profile_log_path() == outer.log_path
    with cPyMemTrace.Profile(0, filepath="next.log"):
        after_restore(3)
    assert _functions("inner.log", "CALL").count("after_restore") == 1
    assert _functions("outer.log", "CALL").count("after_restore") == 1
    assert _functions("next.log", "CALL").count("after_restore") == 1
    notes = [text for _, text in cpmt_log.read("outer.log").notes]
    assert any(n.startswith("# DETACH") for n in notes) and any(n.startswith("# RESUME") for n in notes)


def test_a_nested_tracer_keeps_the_backend_of_its_outer_one():
    with cPyMemTrace.Profile(0, filepath="outer.log") as outer:
        cPyMemTrace.set_backend("legacy")
        with cPyMemTrace.Profile(0, filepath="inner.log"):
            assert sys.getprofile() is None     # still on sys.monitoring
            after_restore(1)
        assert cPyMemTrace.profile_log_path() == outer.log_path
    assert _functions("inner.log", "CALL").count("after_restore") == 1


def test_set_backend_refuses_what_it_does_not_know():
    with pytest.raises(ValueError, match="'monitoring' or 'legacy', not 'fast'"):
        cPyMemTrace.set_backend("fast")
    assert cPyMemTrace.get_backend() == "monitoring"
