"""cPyMemTrace: the seed's examples (Profile/Trace logs in the seed's format and its
attribution of each 1 MiB step), the events each context logs, the decorators and the
backend.  The other concerns: test_cpymemtrace_logs.py (messages, paths, names),
_nesting (nesting, threads, fork), _faults (bad input, I/O errors, exceptions, exits),
_rss (how RSS is read), _gate, _monitoring, _restore, _original_api; shared helpers in
cpymemtrace_helpers.py."""
import pathlib
import re
import subprocess
import sys

import pytest

from pymemtrace import cPyMemTrace
from pymemtrace.readers import cpmt_log

from cpymemtrace_helpers import (MIB, NAME, HEADER, GLIBC_LARGE_BLOCKS, SANITIZED,
                                create_string, seed_block, logs, steps_on_create_string)
from cpymemtrace_helpers import _in_tmp_cwd  # noqa: F401  (autouse fixture)


# ---- the seed's examples ------------------------------------------------------------------

SEED = """\
from pymemtrace import cPyMemTrace

def create_string(l: int) -> str:
    return ' ' * l

with cPyMemTrace.{ctx}:
    l = []
    for i in range(8):
        l.append(create_string(1024**2))
    while len(l):
        l.pop()
"""


def run_seed(ctx):
    """The seed's example, verbatim, in a fresh interpreter; returns (pid, log path)."""
    pathlib.Path("test_cpymemtrace.py").write_text(SEED.format(ctx=ctx))
    proc = subprocess.Popen([sys.executable, "test_cpymemtrace.py"])
    assert proc.wait() == 0
    (path,) = logs(ctx[0])
    return proc.pid, path


def test_seed_example_default_trigger():
    pid, path = run_seed("Profile()")
    m = NAME.match(path.name)
    assert (int(m.group(1)), m.group(3)) == (pid, "1")
    text = path.read_text()
    assert text.splitlines()[0] == HEADER
    log = cpmt_log.read(path)
    assert log.complete and not log.truncated and log.messages == []
    rows = log.records
    assert (rows[0].kind, rows[0].event, rows[0].d_event, rows[0].what, rows[0].function) == \
        ("NEXT", 0, 0, "CALL", "create_string")
    assert rows[0].d_rss == rows[0].rss
    # each +1 MiB step is on the RETURN of create_string, as the seed shows
    steps = steps_on_create_string(log)
    assert len(steps) == 8
    assert all(r.what == "RETURN" and r.file == "test_cpymemtrace.py" for r in steps)
    # The first call also pages in the interpreter code it runs for the first time: with a
    # shared libpython (Debian's python3) that is file-backed RSS too, up to ~200 KiB.
    assert MIB <= steps[0].d_rss <= MIB + 512 * 1024
    assert all(MIB <= r.d_rss <= MIB + 64 * 1024 for r in steps[1:])
    # NEXT 0, NEXT 1, PREV 4, NEXT 5, PREV 8, NEXT 9, ... as in the seed's table
    assert [(r.kind, r.event) for r in rows[:6]] == \
        [("NEXT", 0), ("NEXT", 1), ("PREV", 4), ("NEXT", 5), ("PREV", 8), ("NEXT", 9)]
    prev, nxt = rows[2], rows[3]
    assert (prev.what, prev.function, prev.d_event, prev.d_rss) == ("CALL", "create_string", 3, 0)
    assert (nxt.d_event, nxt.rss - prev.rss) == (4, nxt.d_rss)
    for a, b in zip(rows, rows[1:]):
        if b.kind == "PREV":
            assert a.kind == "NEXT" and b.event > a.event + 1
    # glibc gives each freed 1 MiB block back: each -1 MiB appears right after a pop
    # (ASan's allocator, under `make sanitize`, keeps freed memory in quarantine)
    if not SANITIZED and GLIBC_LARGE_BLOCKS:
        drops = [r for r in log.next_records if r.d_rss <= -MIB]
        assert len(drops) == 8
        assert all(r.function in ("pop", "len") for r in drops)
    end = text.splitlines()[-1]
    assert re.match(r"^# END events=66 clock=\d+\.\d{6} rss=\d+ rss_peak=\d+ exit=ok$", end)


def test_seed_example_every_event():
    _, path = run_seed("Profile(0)")
    log = cpmt_log.read(path)
    assert log.complete
    assert [r.event for r in log.records] == list(range(66))
    assert all(r.kind == "NEXT" and r.d_event == (1 if r.event else 0) for r in log.records)
    whats = [(r.what, r.function) for r in log.records[:6]]
    assert whats == [("CALL", "create_string"), ("RETURN", "create_string"),
                     ("C_CALL", "append"), ("C_RETURN", "append"),
                     ("CALL", "create_string"), ("RETURN", "create_string")]
    assert log.records[-1].what == "C_RETURN" and log.records[-1].function == "len"
    # dRSS is the change since the previous row, so the rows add up
    for a, b in zip(log.records, log.records[1:]):
        assert b.d_rss == b.rss - a.rss
    assert len(steps_on_create_string(log)) == 8
    assert all(r.what == "RETURN" for r in steps_on_create_string(log))


def test_row_layout_matches_the_seed():
    _, path = run_seed("Profile(0)")
    line = path.read_text().splitlines()[2]
    assert re.match(r"^NEXT: 1     \+1      \d\.\d{6} RETURN   test_cpymemtrace\.py #   4 "
                    r"create_string +\d{7,} +\d+$", line), line


def test_trace_logs_lines():
    _, path = run_seed("Trace()")
    log = cpmt_log.read(path)
    assert log.complete
    steps = steps_on_create_string(log)
    assert len(steps) == 8 and all(r.what == "RETURN" for r in steps)
    with cPyMemTrace.Trace(0, filepath="every.log") as t:
        seed_block()
    assert t.log_path == "every.log"
    every = cpmt_log.read("every.log")
    whats = {r.what for r in every.records}
    assert {"LINE", "CALL", "RETURN"} <= whats
    assert not whats & {"C_CALL", "C_RETURN"}
    lines = {r.line for r in every.records if r.what == "LINE" and r.function == "seed_block"}
    first = seed_block.__code__.co_firstlineno
    assert {first + 1, first + 2, first + 3, first + 4, first + 5} <= lines


def test_trace_reports_exceptions():
    def boom():
        raise ValueError("x")

    with cPyMemTrace.Trace(0, filepath="t.log"):
        try:
            boom()
        except ValueError:
            pass
    whats = [(r.what, r.function) for r in cpmt_log.read("t.log").records]
    assert ("EXCEPTION", "boom") in whats


def test_profile_reports_c_exceptions():
    with cPyMemTrace.Profile(0, filepath="p.log"):
        try:
            int("not a number")
        except ValueError:
            pass
    whats = [(r.what, r.function) for r in cpmt_log.read("p.log").records]
    assert ("C_CALL", "int") not in whats   # int is a type: called without a C_CALL
    with cPyMemTrace.Profile(0, filepath="p2.log"):
        try:
            divmod(1, 0)
        except ZeroDivisionError:
            pass
    whats = [(r.what, r.function) for r in cpmt_log.read("p2.log").records]
    assert ("C_CALL", "divmod") in whats and ("C_EXCEPTION", "divmod") in whats


# ---- decorators -----------------------------------------------------------------------------

def test_decorators():
    @cPyMemTrace.profile(0, message="decorated", filepath="d.log")
    def work(n):
        """Doc."""
        return len(create_string(n))

    @cPyMemTrace.trace
    def traced():
        return create_string(5)

    assert work(10) == 10 and work.__name__ == "work" and work.__doc__ == "Doc."
    assert traced() == "     "
    log = cpmt_log.read("d.log")
    assert log.messages == ["decorated"] and log.complete
    assert {"work", "create_string"} <= {r.function for r in log.records}
    (t,) = logs("T")
    assert any(r.what == "LINE" for r in cpmt_log.read(t).records)
    with pytest.raises(TypeError, match="d_rss_trigger"):
        cPyMemTrace.profile("x")
    with pytest.raises(AttributeError):
        cPyMemTrace.no_such_thing
    assert {"profile", "trace", "Profile", "Trace", "rss"} <= set(dir(cPyMemTrace))
    from pymemtrace.cPyMemTrace import profile, trace    # noqa: F401


def test_backend_before_3_12_is_legacy_and_monitoring_is_refused_with_the_version():
    if sys.version_info >= (3, 12):
        assert cPyMemTrace.get_backend() == "monitoring"
        return
    assert cPyMemTrace.get_backend() == "legacy"
    with pytest.raises(ValueError, match=r"sys.monitoring needs CPython 3.12 or later, this is 3\."):
        cPyMemTrace.set_backend("monitoring")
    assert cPyMemTrace.set_backend("legacy") == "legacy"
