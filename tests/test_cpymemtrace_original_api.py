"""cPyMemTrace's names from the original pymemtrace, for code written against it:
Profile/Trace.log_file_path(), write_message_to_log(), write_to_log(), the errors of
the module-level message functions, and the module pymemtrace.cpymemtrace_decs."""
import pathlib
import re

import pytest

from pymemtrace import cPyMemTrace, cpymemtrace_decs
from pymemtrace.readers import cpmt_log

MSG_ROW = re.compile(r"^MSG:  (\d+) +\+(\d+) +(\d+\.\d{6}) # (.*)$")


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _one(i):
    return i


def work(n=3):
    """n Python calls (2 n profile events)."""
    return [_one(i) for i in range(n)]


@pytest.mark.parametrize("cls", [cPyMemTrace.Profile, cPyMemTrace.Trace])
def test_log_file_path_only_while_active(cls):
    t = cls()
    assert t.log_file_path() is None
    with t:
        path = t.log_file_path()
        assert path == t.log_path and pathlib.Path(path).is_file()
        with cls() as inner:
            assert inner.log_file_path() not in (None, path)
            assert t.log_file_path() == path
        assert inner.log_file_path() is None
    assert t.log_file_path() is None
    assert t.log_path == path           # ours keeps the path after exit


@pytest.mark.parametrize("cls", [cPyMemTrace.Profile, cPyMemTrace.Trace])
def test_write_message_to_log_is_a_row_at_the_current_event(cls):
    with cls(0, filepath="m.log") as t:
        work()
        t.write_message_to_log("half way")
        work()
        t.write_message_to_log("done")
    lines = pathlib.Path("m.log").read_text().splitlines()
    log = cpmt_log.read("m.log")
    msgs = [(i, MSG_ROW.match(line)) for i, line in enumerate(lines, 1) if line.startswith("MSG:")]
    assert [m.group(4) for _, m in msgs] == ["half way", "done"]
    for lineno, m in msgs:
        # every event is logged (trigger 0): the message is at the last row's event, +0
        before = [r for r in log.records if r.lineno < lineno][-1]
        assert (int(m.group(1)), int(m.group(2))) == (before.event, 0)
        assert float(m.group(3)) >= before.clock
    # the reader keeps them in order as notes; the log is still complete
    assert [t for _, t in log.notes if t.startswith("MSG:")] == [lines[i - 1] for i, _ in msgs]
    assert log.complete


def test_write_message_to_log_counts_events_since_the_last_row():
    with cPyMemTrace.Profile(filepath="d.log") as t:      # logs only when RSS moves
        t.write_message_to_log("start")
        work(50)
        t.write_message_to_log("after work")
    log = cpmt_log.read("d.log")
    rows = [MSG_ROW.match(t) for _, t in log.notes if t.startswith("MSG:")]
    last_row_event = max(r.event for r in log.records)
    ev, dev = int(rows[1].group(1)), int(rows[1].group(2))
    assert ev == t.events - 1 and dev == ev - last_row_event and dev >= 100


@pytest.mark.parametrize("cls", [cPyMemTrace.Profile, cPyMemTrace.Trace])
def test_write_to_log_writes_the_text_as_it_is(cls):
    with cls(filepath="w.log") as t:
        t.write_to_log("free text, no prefix")
        t.write_to_log("ends in a newline\n")
    lines = pathlib.Path("w.log").read_text().splitlines()
    assert "free text, no prefix" in lines and "ends in a newline" in lines
    assert lines[-1].startswith("# END ")


@pytest.mark.parametrize("cls", [cPyMemTrace.Profile, cPyMemTrace.Trace])
@pytest.mark.parametrize("method", ["write_message_to_log", "write_to_log"])
def test_writing_to_a_closed_log_raises_the_originals_error(cls, method):
    t = cls(filepath="c.log")
    with pytest.raises(OSError) as err:
        getattr(t, method)("before enter")
    assert err.value.args[0] == "Log file is closed."
    with t:
        with pytest.raises(TypeError, match=f"{method}\\(\\): msg must be a str, not bytes"):
            getattr(t, method)(b"bytes")
    with pytest.raises(OSError) as err:
        getattr(t, method)("after exit")
    assert err.value.args[0] == "Log file is closed."
    assert "after exit" not in pathlib.Path("c.log").read_text()


@pytest.mark.parametrize("fn, kind", [(cPyMemTrace.profile_write_message_to_log, "profile"),
                                      (cPyMemTrace.trace_write_message_to_log, "trace")])
def test_module_message_with_nothing_active_is_runtime_and_value_error(fn, kind):
    for expected in (RuntimeError, ValueError, cPyMemTrace.NotActiveError):
        with pytest.raises(expected) as err:
            fn("nobody listens")
        assert err.value.args[0] == \
            f"Trying to write to a {kind} log file when no reference tracer is active."


def _tree():
    return [bytearray(1000) for _ in range(10)]


def test_cpymemtrace_decs_profile_runs_each_call_in_its_own_profile():
    seen = []

    @cpymemtrace_decs.profile(d_rss_trigger=0, message="decorated")
    def f(x):
        seen.append((cPyMemTrace.profile_log_path(), cPyMemTrace.profile_wrapper_depth()))
        _tree()
        return x * 2

    assert f.__name__ == "f"
    assert f(21) == 42 and f(1) == 2
    assert cPyMemTrace.profile_log_path() is None
    (p1, d1), (p2, d2) = seen
    assert p1 != p2 and d1 == d2 == 1
    for p in (p1, p2):
        log = cpmt_log.read(p)
        assert log.messages == ["decorated"] and log.complete
        assert any(r.function == "_tree" and r.what == "CALL" for r in log.records)


def test_cpymemtrace_decs_trace_logs_lines():
    @cpymemtrace_decs.trace(0)
    def g():
        path = cPyMemTrace.trace_log_path()
        _tree()
        return path

    path = g()
    log = cpmt_log.read(path)
    assert any(r.what == "LINE" and r.function == "g" for r in log.records)
    assert cPyMemTrace.trace_log_path() is None


def test_cpymemtrace_decs_checks_arguments_when_decorating():
    with pytest.raises(ValueError, match="d_rss_trigger"):
        cpymemtrace_decs.profile(-7)
    with pytest.raises(TypeError, match="message must be a str"):
        cpymemtrace_decs.trace(0, 5)
