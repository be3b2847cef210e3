"""Profile(0) and Trace(0) log every event, and take a path of their own for it
(src/ext/cpymemtrace/callback.c every_event: no PREV bookkeeping, names cached by
PyMethodDef).  Its rows must be those of the general path (cPyMemTrace._set_every_path
(False) makes a context take that one): the same events, kinds, files, lines and
function names, for Python calls, C functions that are a static type's methods (more
of them in turn than its memo holds), module functions, bound methods of fresh
objects, method descriptors (sys.monitoring), a C function that raises, generators,
functions of other files, nested contexts and exact-RSS mode.  Clock, RSS and dRSS
differ between two runs and are left out.  Neither path keeps a reference after
__exit__."""
import gc
import math
import os
import re
import sys

import pytest

from pymemtrace import cPyMemTrace

from cpymemtrace_helpers import _in_tmp_cwd  # noqa: F401  (autouse fixture)

BACKENDS = ["legacy"] + (["monitoring"] if sys.version_info >= (3, 12) else [])
PAT = re.compile(r"a+")


class Box:
    def __init__(self, v):
        self.v = v

    def get(self):
        return self.v


def _gen(n):
    for i in range(n):
        yield i


def _work():
    lst, d = [], {}
    for i in range(200):
        lst.append(i)                   # a static type's method (legacy: a fresh bound one)
        n = len(lst)                    # a module's function
        isinstance(n, int)
        math.sqrt(i)                    # another module's
        d.get(i)                        # more static methods in turn than 2
        d.setdefault(i, i)
        "".join(["a", str(i)])
        Box(i).get()                    # Python calls, a new object each time
        [i].copy()                      # a method of a fresh list
        PAT.match("aa")                 # a heap type's method (PyCMethod on 3.10+)
        try:
            d.pop(-1)                   # C_EXCEPTION
        except KeyError:
            pass
        sum(_gen(3))
        (lambda: None)()
        os.path.join("a", str(i))       # a function of another file
        if i % 50 == 0:
            lst.clear()
    for i in range(50):                 # two static methods in turn
        lst.append(i)
        d.get(i)


def _rows(path):
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(("NEXT:", "PREV:")):
                fields = line.split()
                rows.append(fields[:3] + fields[4:-2])      # not Clock, RSS, dRSS
    return rows


def _run(cls, tmp_path, tag, every):
    old = cPyMemTrace._set_every_path(every)
    try:
        outer, inner = tmp_path / f"{tag}_outer.log", tmp_path / f"{tag}_inner.log"
        gc.collect()
        with cls(0, filepath=str(outer)) as t:
            _work()
            with cls(0, filepath=str(inner)) as u:
                _work()
            _work()
        return (_rows(outer), t.events), (_rows(inner), u.events)
    finally:
        cPyMemTrace._set_every_path(old)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("exact", [False, True], ids=["gate", "exact"])
@pytest.mark.parametrize("kind", ["Profile", "Trace"])
def test_every_event_path_writes_the_general_paths_rows(kind, exact, backend, tmp_path):
    assert cPyMemTrace._set_every_path(True) is True      # the default
    cls = getattr(cPyMemTrace, kind)
    old_backend = cPyMemTrace.set_backend(backend)
    old_exact = cPyMemTrace.set_exact_rss(exact)
    # what the tracers hold while active (last code, C function, line memo) is let go
    # at __exit__: no reference more or less after both runs
    held = [len, isinstance, math.sqrt, list.__dict__["append"], _work.__code__,
            Box.get.__code__, _gen.__code__]
    try:
        _work()     # imports, caches: the same in both runs after this
        gc.collect()
        counts = [sys.getrefcount(o) for o in held]
        fast = _run(cls, tmp_path, "every", True)
        general = _run(cls, tmp_path, "general", False)
        gc.collect()
        assert [sys.getrefcount(o) for o in held] == counts
    finally:
        cPyMemTrace.set_exact_rss(old_exact)
        cPyMemTrace.set_backend(old_backend)
    for (rows, events), (grows, gevents) in zip(fast, general):
        assert events == gevents > 1000
        assert len(rows) == events          # a NEXT row per event, no PREV row
        assert all(r[0] == "NEXT:" for r in rows)
        assert [r[1] for r in rows] == [str(e) for e in range(events)]
        assert rows == grows
    names = {r[-1] for r in fast[0][0]}
    assert {"_work", "__init__", "get", "_gen", "<lambda>", "join"} <= names
    if kind == "Profile":       # C functions
        assert {"append", "len", "isinstance", "sqrt", "setdefault", "pop", "match",
                "copy", "clear"} <= names
