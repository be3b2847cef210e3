"""cPyMemTrace's per-event hook: the names and lines its rows give where the quiet path
and the row path take short cuts (PREV rows of C methods the legacy hook binds afresh
at every call, heap types' methods, the (code, offset) line memo of 3.12+, the frame
fields read directly on 3.11+), on each backend of this interpreter."""
import array
import sys
import textwrap
import weakref

import pytest

from pymemtrace import cPyMemTrace
from pymemtrace.readers import cpmt_log

# Above glibc's largest mmap threshold (32 MiB): a block of its own, fresh pages, so
# zero-filling it moves RSS at once, whatever the process freed before.
BIG = 40 << 20
BACKENDS = ["legacy"] + (["monitoring"] if sys.version_info >= (3, 12) else [])


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(params=BACKENDS)
def backend(request):
    old = cPyMemTrace.set_backend(request.param)
    yield request.param
    cPyMemTrace.set_backend(old)


def _line_of(marker):
    """The line of this file that ends with the comment marker."""
    with open(__file__) as f:
        return next(i for i, text in enumerate(f, 1) if text.rstrip().endswith("# " + marker))


def _prev_before(log, function):
    """The PREV row just before the NEXT row of the first C_CALL of function."""
    rows = log.records
    for i, r in enumerate(rows):
        if r.kind == "NEXT" and r.what == "C_CALL" and r.function == function and i:
            return rows[i - 1]
    raise AssertionError(f"no NEXT C_CALL {function}: {[(r.kind, r.what, r.function) for r in rows]}")


def test_prev_row_names_a_bound_builtin_method_freed_before_the_row(backend):
    # The legacy hook passes a bound method it makes for this one call of lst.append
    # and frees right after its C_RETURN; the row for that C_RETURN is written only at
    # the next event (len), when RSS has moved: it must still say append, at its line.
    lst = []
    with cPyMemTrace.Profile(filepath="p.log"):
        lst.append(1)  # <list append>
        b = bytearray(BIG)
        len(b)
        del b
    prev = _prev_before(cpmt_log.read("p.log"), "len")
    assert (prev.kind, prev.what, prev.function, prev.line) == \
        ("PREV", "C_RETURN", "append", _line_of("<list append>"))


def test_prev_row_names_a_method_of_a_heap_type_gone_before_the_row(backend):
    # A class made at run time over a heap type of an extension (array.array): the
    # method's object, its self and the class itself are dropped before the row.
    def make():
        cls = type("Arr", (array.array,), {})
        return cls("b")

    with cPyMemTrace.Profile(filepath="p.log"):
        a = make()
        a.append(1)  # <array append>
        r = weakref.ref(a)
        del a
        b = bytearray(BIG)
        len(b)
        del b
    prev = _prev_before(cpmt_log.read("p.log"), "len")
    assert (prev.what, prev.function, prev.line) == ("C_RETURN", "append", _line_of("<array append>"))
    del r


def test_a_builtin_method_call_keeps_no_object_alive(backend):
    # The name of list.append is static: the tracer remembers its method, not the
    # bound method the legacy hook makes, so the list is freed when the program drops
    # it, not when a later C call pushes the bound method out of the tracer's hands.
    class L(list):
        pass

    for trigger in (-1, 0):
        with cPyMemTrace.Profile(trigger, filepath=f"p{trigger}.log"):
            o = L()
            r = weakref.ref(o)
            o.append(1)
            del o
            alive = r() is not None
        assert not alive
        assert [(x.what, x.function) for x in cpmt_log.read(f"p{trigger}.log").records][:1] == \
            [("C_CALL", "append")]


# 80 places in one function, each a C call on a line of its own, run twice: more places
# than the line memo has entries, so rows come from both its hits and its misses.
MANY = "def many(x):\n" + "".join(f"    len(x)  # {i}\n" for i in range(80))


def test_every_row_has_the_line_of_its_place(backend):
    ns = {}
    exec(compile(MANY, "many_places.py", "exec"), ns)
    many = ns["many"]
    with cPyMemTrace.Profile(0, filepath="p.log"):
        many("ab")
        many("ab")
    rows = [r for r in cpmt_log.read("p.log").records if r.file == "many_places.py"]
    calls = [r for r in rows if r.what in ("C_CALL", "C_RETURN")]
    assert len(calls) == 2 * 2 * 80
    # C_CALL and C_RETURN of the i-th len are on line i + 2 (line 1 is the def)
    expected = [i + 2 for i in range(80) for _ in range(2)] * 2
    assert [r.line for r in calls] == expected
    assert all(r.function == "len" for r in calls)
    # a return's line is the last statement's, the start's the def's (3.12+) or its own
    starts = [r for r in rows if r.what == "CALL"]
    returns = [r for r in rows if r.what == "RETURN"]
    assert len(starts) == len(returns) == 2
    assert all(r.line == 81 for r in returns)


def test_lines_stay_right_across_alternating_functions(backend):
    # Two functions whose places alternate row after row (the names and lines of
    # consecutive rows change at every row, C functions' names of other lengths), as
    # in a loop of calls.
    src = textwrap.dedent("""\
        def f(x):
            return len(x)
        def g(x):
            y = isinstance(x, int)
            return y
        def loop(n):
            for i in range(n):
                f("a")
                g(-i)
        """)
    ns = {}
    exec(compile(src, "alternate.py", "exec"), ns)
    with cPyMemTrace.Profile(0, filepath="p.log"):
        ns["loop"](50)
    rows = [r for r in cpmt_log.read("p.log").records if r.file == "alternate.py"]
    want = {("C_CALL", "len"): 2, ("C_RETURN", "len"): 2, ("C_CALL", "isinstance"): 4,
            ("C_RETURN", "isinstance"): 4, ("RETURN", "f"): 2, ("RETURN", "g"): 5}
    seen = {}
    for r in rows:
        key = (r.what, r.function)
        if key in want:
            assert r.line == want[key], (r.event, key, r.line)
            seen[key] = seen.get(key, 0) + 1
    assert seen == {k: 50 for k in want}


# Lines of the legacy hook on 3.12+: f_lineno when the interpreter set it for the
# callback (a trace function's LINE events, backward jumps on one line included),
# else the (code, offset) memo; the same lines as PyFrame_GetLineNumber, which the
# monitoring backend's rows match event for event.
LINES = textwrap.dedent("""\
    def step(n):
        out = []
        for i in range(n):
            out.append(
                len(str(i)))
        while n: n -= 1
        try:
            int("x")
        except ValueError:
            out.append(0)
        return out
    def run():
        g = (step(k) for k in range(3))
        return [len(x) for x in g]
    """)


def _lines_rows(kind, backend, name):
    old = cPyMemTrace.set_backend(backend)
    ns = {}
    exec(compile(LINES, "lines.py", "exec"), ns)
    try:
        with getattr(cPyMemTrace, kind)(0, filepath=name):
            ns["run"]()
    finally:
        cPyMemTrace.set_backend(old)
    return [(r.kind, r.what, r.line, r.function) for r in cpmt_log.read(name).records
            if r.file == "lines.py"]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="one backend before 3.12")
@pytest.mark.parametrize("kind", ["Profile", "Trace"])
def test_legacy_rows_name_the_lines_of_the_monitoring_rows(kind):
    legacy = _lines_rows(kind, "legacy", "legacy.log")
    mon = _lines_rows(kind, "monitoring", "mon.log")
    assert len(legacy) > 30
    assert legacy == mon
    # every statement of step is a row's line (LINE events of Trace, its one-line loop's
    # back edge twice in a row), and every C call's for Profile
    lines = [line for _, _, line, _ in legacy]
    if kind == "Trace":
        assert set(lines) == set(range(1, 15))
        assert any(a == b == 6 for a, b in zip(lines, lines[1:]))
    else:
        assert set(lines) == {1, 4, 5, 10, 11, 12, 13, 14}


def test_a_prev_row_of_a_line_event_names_its_line(backend):
    # Trace(): the row for the line that allocated is written at the next event, as the
    # PREV row of that line's LINE event.
    with cPyMemTrace.Trace(filepath="t.log"):
        x = 1
        b = bytearray(BIG)  # <big line>
        x = len(b)
        del b
    rows = cpmt_log.read("t.log").records
    i = next(i for i, r in enumerate(rows) if r.kind == "NEXT" and r.line == _line_of("<big line>") + 1)
    assert (rows[i - 1].kind, rows[i - 1].what, rows[i - 1].line) == \
        ("PREV", "LINE", _line_of("<big line>"))
