"""ReferenceTracing / ReferenceTracingSimple (CPython 3.13+'s reference tracer hook)."""
import gc
import re
import sys

import pytest

from pymemtrace import cMemLeak, reference_tracing as rtm

needs_hook = pytest.mark.skipif(not rtm.AVAILABLE,
                                reason="the reference tracer hook is CPython 3.13+ only")

# CPython 3.13.0 to 3.13.2 do not report the objects the eval loop itself frees
# (cpython gh-130382): the workloads below free their objects from C
# (list.clear(), the garbage collector) so that every version reports them.


class Leaky:
    """A heap type with a unique name, to find in the log."""
    def __init__(self, n):
        self.payload = b"x" * n


def _rows(text, kind, type_name):
    return [line for line in text.splitlines()
            if line.startswith(kind) and f" {type_name} " in line]


@pytest.mark.skipif(rtm.AVAILABLE, reason="this interpreter has the hook")
def test_before_313_a_clear_error_not_an_import_error():
    from pymemtrace import cPyMemTrace
    for make in (rtm.ReferenceTracing, rtm.ReferenceTracingSimple,
                 cPyMemTrace.ReferenceTracing, rtm.reference_tracing_wrapper_depth,
                 cPyMemTrace.reference_tracing_live_object_counts):
        with pytest.raises(RuntimeError, match=r"reference tracer hook.*3\.13"):
            make()
    from pymemtrace import cpymemtrace_decs

    @cpymemtrace_decs.reference_tracing()
    def work():
        return 1
    with pytest.raises(RuntimeError, match=r"reference tracer hook.*3\.13"):
        work()


def test_cpymemtrace_has_the_original_names():
    from pymemtrace import cPyMemTrace
    for name in ("ReferenceTracing", "ReferenceTracingSimple", "reference_tracing_wrapper_depth",
                 "reference_tracing_simple_wrapper_depth", "reference_tracing_log_path",
                 "reference_tracing_write_message_to_log",
                 "reference_tracing_live_object_counts"):
        assert getattr(cPyMemTrace, name) is getattr(rtm, name)


@needs_hook
def test_log_rows_live_counts_and_the_leak_summary(tmp_path):
    log = tmp_path / "rt.log"
    with rtm.ReferenceTracing(message="leak hunt", filepath=str(log),
                              include_tp_names=["Leaky"]) as rt:
        assert rt.log_file_path() == str(log)
        assert rtm.reference_tracing_log_path() == str(log)
        kept = [Leaky(10) for _ in range(3)]
        temps = [Leaky(20) for _ in range(5)]
        temps.clear()
        assert rt.live_object_counts() == {"Leaky": 3}
        assert rtm.reference_tracing_live_object_counts() == {"Leaky": 3}
        rt.write_message_to_log("three kept")
        rtm.reference_tracing_write_message_to_log("module level")
    assert rt.log_file_path() is None
    assert rt.live_object_counts()["Leaky"] == 3
    text = log.read_text()
    assert text.startswith("leak hunt\nSOF\nHDR:")
    assert text.endswith("LIVE:       3 Leaky\nEOF\n")
    new, dele = _rows(text, "NEW:", "Leaky"), _rows(text, "DEL:", "Leaky")
    assert len(new) == 8 and len(dele) == 5
    # The live count column after each event.
    assert [int(r.split()[3]) for r in new] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [int(r.split()[3]) for r in dele] == [7, 6, 5, 4, 3]
    assert all(__file__ in r for r in new)
    assert "MSG:" in text and "# three kept" in text and "# module level" in text
    assert " int " not in text and " bytes " not in text
    assert len(kept) == 3


@needs_hook
def test_filters_builtins_and_excludes(tmp_path):
    on, off = tmp_path / "on.log", tmp_path / "off.log"
    with rtm.ReferenceTracing(filepath=str(on), include_builtins=True):
        data = [Leaky(i) for i in range(3)]
    with rtm.ReferenceTracing(filepath=str(off), exclude_tp_names=["Leaky"]):
        data = [Leaky(i) for i in range(3)] + [list(range(3))]
    assert _rows(on.read_text(), "NEW:", "Leaky") and _rows(on.read_text(), "NEW:", "list")
    assert not _rows(off.read_text(), "NEW:", "Leaky")
    assert not _rows(off.read_text(), "NEW:", "list")
    assert data


@needs_hook
@pytest.mark.parametrize("cls", [cMemLeak.CMalloc, cMemLeak.PyRawMalloc, cMemLeak.PyMalloc])
def test_deliberate_leak_is_in_the_live_summary(tmp_path, cls):
    log = tmp_path / "leak.log"
    name = f"cMemLeak.{cls.__name__}"
    with rtm.ReferenceTracing(filepath=str(log), include_tp_names=[name]) as rt:
        objs = [cls(128) for _ in range(4)]
        objs[1].inc_refcnt(1)      # never freed: a leak
        objs[3].inc_refcnt(1)
        objs.clear()
    assert rt.live_object_counts() == {name: 2}
    assert f"LIVE:       2 {name}\n" in log.read_text()


@needs_hook
def test_garbage_cycles_are_collected_before_the_end(tmp_path):
    log = tmp_path / "gc.log"
    with rtm.ReferenceTracing(filepath=str(log), include_tp_names=["Leaky"]) as rt:
        a = Leaky(1)
        a.me = a
        del a
    assert "Leaky" not in rt.live_object_counts()
    with rtm.ReferenceTracing(filepath=str(log), include_tp_names=["Leaky"],
                              gc_collect_on_exit=-1) as rt:
        gc.disable()
        try:
            a = Leaky(1)
            a.me = a
            del a
        finally:
            gc.enable()
    assert rt.live_object_counts() == {"Leaky": 1}
    gc.collect()


@needs_hook
def test_nesting_detaches_and_reattaches(tmp_path):
    outer_log, inner_log = tmp_path / "o.log", tmp_path / "i.log"
    assert rtm.reference_tracing_wrapper_depth() == 0
    with rtm.ReferenceTracing(filepath=str(outer_log), include_tp_names=["Leaky"]):
        assert rtm.reference_tracing_wrapper_depth() == 1
        with rtm.ReferenceTracing(filepath=str(inner_log), include_tp_names=["Leaky"]):
            assert rtm.reference_tracing_wrapper_depth() == 2
            inner = Leaky(1)
            with rtm.ReferenceTracingSimple() as simple:
                assert rtm.reference_tracing_simple_wrapper_depth() == 1
                [Leaky(1) for _ in range(3)].clear()
            assert simple.count_new() >= 3 and simple.count_del() >= 3
        outer = Leaky(2)
    assert rtm.reference_tracing_wrapper_depth() == 0
    assert rtm.reference_tracing_log_path() is None
    o, i = outer_log.read_text(), inner_log.read_text()
    assert re.search(r"# Detaching .*New file: " + re.escape(str(inner_log)), o)
    assert "# Re-attaching" in o
    assert len(_rows(i, "NEW:", "Leaky")) == 1 and len(_rows(o, "NEW:", "Leaky")) == 1
    assert inner and outer


@needs_hook
def test_suspend_resume_and_counts(tmp_path):
    log = tmp_path / "s.log"
    with rtm.ReferenceTracing(filepath=str(log), include_tp_names=["Leaky"]) as rt:
        rt.suspend()
        hidden = Leaky(1)
        rt.resume()
        shown = Leaky(2)
        assert rt.count_new() >= 1
    assert len(_rows(log.read_text(), "NEW:", "Leaky")) == 1
    assert hidden and shown


@needs_hook
def test_errors_read_as_the_originals(tmp_path):
    with pytest.raises(TypeError, match="argument 1 must be str, not int"):
        rtm.ReferenceTracing(21)
    with pytest.raises(TypeError, match="unexpected keyword argument 'd_rss_trigger'"):
        rtm.ReferenceTracing(d_rss_trigger=0)
    with pytest.raises(TypeError, match="at most 6 arguments"):
        rtm.ReferenceTracing("m", "f", False, [], [], 2, "x")
    with pytest.raises(TypeError, match="include_tp_names"):
        rtm.ReferenceTracing(include_tp_names=[1])
    with pytest.raises(ValueError, match="no reference tracer is active"):
        rtm.reference_tracing_write_message_to_log("x")
    rt = rtm.ReferenceTracing(filepath=str(tmp_path / "x.log"))
    with pytest.raises(OSError, match="closed"):
        rt.write_message_to_log("x")
    with pytest.raises(OSError, match="can not open"):
        with rtm.ReferenceTracing(filepath=str(tmp_path / "no" / "such" / "dir.log")):
            pass
    assert rtm.reference_tracing_wrapper_depth() == 0


@needs_hook
def test_default_log_name_in_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with rtm.ReferenceTracing() as rt:
        path = rt.log_file_path()
    assert path.startswith(str(tmp_path) + "/") and re.search(r"_O_0_PY3\.\d+\.\d+.*\.log$", path)
    assert (tmp_path / path.rsplit("/", 1)[-1]).read_text().startswith("SOF\n")


@needs_hook
def test_reftracecount_counts_from_creation_until_closed():
    from pymemtrace import cPyRefTraceExample
    counter = cPyRefTraceExample.RefTraceCount()
    [[i] for i in range(10)].clear()
    assert counter.count_new() >= 11 and counter.count_del() >= 10
    assert rtm.reference_tracing_simple_wrapper_depth() == 1
    counter.close()
    assert rtm.reference_tracing_simple_wrapper_depth() == 0
    frozen = counter.count_new()
    [[i] for i in range(10)].clear()
    assert counter.count_new() == frozen
    another = cPyRefTraceExample.RefTraceCount()
    del another     # freed: stops counting
    assert rtm.reference_tracing_simple_wrapper_depth() == 0


@pytest.mark.skipif(rtm.AVAILABLE, reason="this interpreter has the hook")
def test_reftracecount_before_313_is_a_clear_error():
    from pymemtrace import cPyRefTraceExample
    with pytest.raises(RuntimeError, match="reference tracer hook"):
        cPyRefTraceExample.RefTraceCount()


LOG_SAMPLE = """\
hello
SOF
HDR:        Clock            Address LiveCnt Type File Line Function RSS dRSS
NEW:     0.000100     0x7f0000001000       1 Leaky                /x/my file.py                                  7 make                       1000         0
NEW:     0.000200     0x7f0000002000       2 Leaky                /x/my file.py                                  7 make                       1000         0
DEL:     0.000300     0x7f0000001000       1 Leaky                /x/other.py                                   9 drop                       1000         0
DEL:     0.000400     0x7f0000009000       0 list                 <no Python frame>                             0 -                          1000         0
MSG:     0.000500 # Detaching this Reference Tracing file wrapper. New file: {child}
NEW:     0.000600     0x7f0000003000       1 dict                 /x/my file.py                                  8 make                       1000         0
NEW:     0.000700     0x7f00000040"""


def test_ref_trace_analyse_reads_a_log(tmp_path):
    from pymemtrace.util import ref_trace_analyse as rta
    child = tmp_path / "child.log"
    child.write_text("SOF\nNEW:     0.1     0x10       1 int  /c.py  3 f  1 0\nEOF\n")
    log = tmp_path / "rt.log"
    log.write_text(LOG_SAMPLE.format(child=child))
    res = rta.process_file_path(str(log), include_untracked=True, recurse_files=True)
    assert res.message == "hello" and res.rows == 5
    assert sorted(res.live) == [0x7f0000002000, 0x7f0000003000]     # truncated row ignored
    assert res.live[0x7f0000002000].new == rta.Site("/x/my file.py", 7, "make")
    assert [o.address for o in res.previous] == [0x7f0000001000]
    assert res.previous[0].deleted.function == "drop"
    assert [o.type_name for o in res.untracked] == ["list"]
    assert res.type_counts == {"Leaky": [2, 1], "list": [0, 1], "dict": [1, 0]}
    assert res.live_by_type() == {"Leaky": 1, "dict": 1}
    assert len(res.children) == 1 and res.children[0].live_by_type() == {"int": 1}
    text = "\n".join(res.long_str_list(show_full_path=False, include_historical=True))
    assert "Live Objects [2]:" in text and "my file.py#7" in text and "/x/" not in text
    assert "NEW: my file.py#7 DEL: other.py#9" in text
    assert rta.main([str(log), "--short-paths"]) == 0
    assert rta.main([str(tmp_path / "missing.log")]) == 1


def test_ref_trace_analyse_process_file_as_the_original_calls_it(tmp_path):
    from pymemtrace.util import ref_trace_analyse as rta
    child = tmp_path / "child.log"
    child.write_text("SOF\nNEW:     0.1     0x10       1 int  /c.py  3 f  1 0\nEOF\n")
    log = tmp_path / "rt.log"
    log.write_text(LOG_SAMPLE.format(child=child))
    with open(log) as f:     # the original 0.6.3's keywords
        res = rta.process_file(f, log_file_id="the id", file_size=1, include_untracked=False,
                               recurse_log_files=False)
    assert res.log_file_id == "the id" and res.live_by_type() == {"Leaky": 1, "dict": 1}
    assert not res.untracked and not res.children
    with open(log) as f:     # and its positional order
        res = rta.process_file(f, "id2", 0, True, True)
    assert res.path == "id2" and [o.type_name for o in res.untracked] == ["list"]
    assert len(res.children) == 1
    with open(log) as f:
        with pytest.raises(TypeError, match="log_file_id, file_size"):
            rta.process_file(f, "id", 0, True)


@needs_hook
def test_ref_trace_analyse_agrees_with_the_tracer(tmp_path):
    from pymemtrace.util import ref_trace_analyse as rta
    log = tmp_path / "rt.log"
    with rtm.ReferenceTracing(filepath=str(log), include_tp_names=["Leaky"]) as rt:
        kept = [Leaky(1) for _ in range(4)]
        [Leaky(2) for _ in range(6)].clear()
    res = rta.process_file_path(str(log), include_untracked=False, recurse_files=False)
    assert res.live_by_type() == rt.live_object_counts() == {"Leaky": 4}
    assert len(res.previous) == 6 and kept


@needs_hook
def test_reference_tracing_decorator(tmp_path):
    log = tmp_path / "dec.log"

    @rtm.reference_tracing(message="decorated", filepath=str(log), include_tp_names=["Leaky"])
    def work(n):
        assert rtm.reference_tracing_wrapper_depth() == 1
        return [Leaky(1) for _ in range(n)]

    from pymemtrace import cpymemtrace_decs     # the original's module of the decorators

    @cpymemtrace_decs.reference_tracing
    def bare():
        return rtm.reference_tracing_log_path()

    assert len(work(3)) == 3
    assert rtm.reference_tracing_wrapper_depth() == 0
    assert log.read_text().startswith("decorated\nSOF")
    assert len(_rows(log.read_text(), "NEW:", "Leaky")) == 3
    monkey_cwd = tmp_path / "cwd"
    monkey_cwd.mkdir()
    import os
    old = os.getcwd()
    os.chdir(monkey_cwd)
    try:
        path = bare()
    finally:
        os.chdir(old)
    assert path and os.path.isfile(path)


@needs_hook
def test_other_threads_events_go_to_the_innermost_tracer(tmp_path):
    import threading
    log = tmp_path / "threads.log"

    def worker(out):
        made = [Leaky(1) for _ in range(5)]
        out.extend(made[:2])        # two survive the thread
        made.clear()

    kept = []
    with rtm.ReferenceTracing(filepath=str(log), include_tp_names=["Leaky"]) as rt:
        t = threading.Thread(target=worker, args=(kept,))
        t.start()
        t.join()
    assert rt.live_object_counts() == {"Leaky": 2}
    assert len(_rows(log.read_text(), "NEW:", "Leaky")) == 5
    assert len(kept) == 2


@needs_hook
def test_exiting_inside_the_block_keeps_the_log(tmp_path):
    import subprocess
    import textwrap
    log = tmp_path / "exit.log"
    code = textwrap.dedent(f"""
        import sys
        from pymemtrace import reference_tracing
        class Leaky:
            pass
        rt = reference_tracing.ReferenceTracing(filepath={str(log)!r}, include_tp_names=["Leaky"])
        rt.__enter__()
        kept = [Leaky() for _ in range(3)]
        sys.exit(3)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out.stderr
    assert len(_rows(log.read_text(), "NEW:", "Leaky")) == 3
