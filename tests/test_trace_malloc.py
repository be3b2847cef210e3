"""trace_malloc: TraceMalloc and trace_malloc_log against the truth of sys.getsizeof."""
import logging
import pathlib
import re
import subprocess
import sys
import tracemalloc

import pytest

from pymemtrace import trace_malloc

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
MIB = 1024 ** 2


@pytest.fixture(autouse=True)
def tracemalloc_off():
    """Every test starts and must end with tracemalloc in the state it found."""
    assert not tracemalloc.is_tracing()
    yield
    was = tracemalloc.is_tracing()
    tracemalloc.stop()
    assert not was, "the test left tracemalloc tracing"


def _truth(strings, lst_size_before, lst):
    """What the block kept: the strings plus the growth of the list."""
    return sum(sys.getsizeof(s) for s in strings) + sys.getsizeof(lst) - lst_size_before


def _seed_block(granularity="filename"):
    list_of_strings = []
    before = sys.getsizeof(list_of_strings)
    with trace_malloc.TraceMalloc(granularity) as tm:
        for i in range(8):
            list_of_strings.append(' ' * 1024**2)
    return tm, _truth(list_of_strings, before, list_of_strings)


@pytest.mark.parametrize("granularity", trace_malloc.ALLOWED_GRANULARITIES)
def test_diff_matches_truth_for_the_seed_example(granularity):
    tm, truth = _seed_block(granularity)
    assert truth > 8 * MIB
    assert abs(tm.diff - truth) <= 1024, (tm.diff, truth)
    # diff is the sum of the net statistics.
    assert tm.diff == sum(s.size_diff for s in tm.net_statistics)
    assert not tracemalloc.is_tracing()


def test_memory_start_finish_are_tracemallocs_own_memory():
    tm, _ = _seed_block()
    assert tm.memory_start > 0 and tm.memory_finish > 0
    assert tm.tracemalloc_memory_usage == tm.memory_finish - tm.memory_start
    # Tracing 9 more blocks costs tracemalloc some memory of its own.
    assert tm.tracemalloc_memory_usage > 0


def test_statistics_show_the_machinery_and_net_statistics_do_not():
    tm, _ = _seed_block("lineno")
    files = {s.traceback[0].filename for s in tm.statistics}
    assert tracemalloc.__file__ in files, files
    net_files = {s.traceback[0].filename for s in tm.net_statistics}
    assert tracemalloc.__file__ not in net_files
    assert trace_malloc.__file__ not in net_files
    assert __file__ in net_files
    # The biggest net line is the line that made the strings.
    top = tm.net_statistics[0]
    assert top.size_diff >= 8 * MIB
    assert "' ' * 1024**2" in open(__file__).read().splitlines()[top.traceback[0].lineno - 1]
    # The objects are StatisticDiff, printable as the seed prints them.
    assert re.match(r".+:\d+: size=.* \(\+.*\), count=\d+ \(\+\d+\), average=", str(top))


def test_already_tracing_is_left_running_with_its_limit():
    tracemalloc.start(5)
    try:
        keep = []
        before = sys.getsizeof(keep)
        with trace_malloc.TraceMalloc() as tm:
            keep.append(b"x" * 100_000)
        assert tracemalloc.is_tracing()
        assert tracemalloc.get_traceback_limit() == 5
        assert abs(tm.diff - _truth(keep, before, keep)) <= 1024
    finally:
        tracemalloc.stop()


def test_frees_show_as_negative_when_already_tracing():
    tracemalloc.start()
    try:
        big = bytearray(2 * MIB)
        with trace_malloc.TraceMalloc() as tm:
            del big
        assert tm.diff <= -2 * MIB + 1024
    finally:
        tracemalloc.stop()


def test_frees_of_objects_older_than_tracing_are_invisible():
    big = bytearray(2 * MIB)            # allocated before tracemalloc started
    with trace_malloc.TraceMalloc() as tm:
        del big
    assert abs(tm.diff) <= 1024


def test_nesting():
    outer_keep, inner_keep = [], []
    with trace_malloc.TraceMalloc() as outer:
        outer_keep.append(b"o" * 300_000)
        with trace_malloc.TraceMalloc("filename") as inner:
            inner_keep.append(b"i" * 500_000)
        assert tracemalloc.is_tracing(), "the inner one must not stop the outer's tracing"
    assert not tracemalloc.is_tracing()
    assert abs(inner.diff - _truth(inner_keep, 56, inner_keep)) <= 1024
    # The outer sees both, but not the inner's own snapshots and statistics.
    expected = _truth(inner_keep, 56, inner_keep) + _truth(outer_keep, 56, outer_keep)
    assert abs(outer.diff - expected) <= 2048, (outer.diff, expected)
    with pytest.raises(RuntimeError, match="already active"):
        with outer:
            with outer:
                pass
    assert not tracemalloc.is_tracing()


def test_exception_in_block_finishes_and_propagates():
    keep = []
    tm = trace_malloc.TraceMalloc()
    with pytest.raises(KeyError, match="boom"):
        with tm:
            keep.append(b"e" * 200_000)
            raise KeyError("boom")
    assert not tracemalloc.is_tracing()
    assert abs(tm.diff - _truth(keep, 56, keep)) <= 1024


@pytest.mark.parametrize("bad", ["line", "", "LINENO", "filenames"])
def test_bad_granularity_value(bad):
    with pytest.raises(ValueError) as info:
        trace_malloc.TraceMalloc(bad)
    msg = str(info.value)
    assert "statistics_granularity" in msg
    for allowed in ("'filename'", "'lineno'", "'traceback'"):
        assert allowed in msg


@pytest.mark.parametrize("bad", [None, 1, b"lineno"])
def test_bad_granularity_type(bad):
    with pytest.raises(TypeError, match="statistics_granularity"):
        trace_malloc.TraceMalloc(bad)


def test_results_before_the_block_ended_are_errors():
    tm = trace_malloc.TraceMalloc()
    for name in ("diff", "memory_start", "statistics", "net_statistics"):
        with pytest.raises(RuntimeError, match="started"):
            getattr(tm, name)
    with tm:
        assert tm.memory_start > 0
        for name in ("diff", "memory_finish", "statistics", "net_statistics",
                     "tracemalloc_memory_usage"):
            with pytest.raises(RuntimeError, match=f"TraceMalloc.{name} .*ended"):
                getattr(tm, name)
    assert isinstance(tm.diff, int)


def test_decorator_logs_the_delta(caplog):
    @trace_malloc.trace_malloc_log(logging.INFO)
    def example_decorator_for_documentation(list_of_strings):
        for i in range(8):
            list_of_strings.append(' ' * 1024**2)

    keep = []
    with caplog.at_level(logging.INFO, logger="pymemtrace.trace_malloc"):
        assert example_decorator_for_documentation(keep) is None
    assert example_decorator_for_documentation.__name__ == "example_decorator_for_documentation"
    [record] = [r for r in caplog.records if r.name == "pymemtrace.trace_malloc"]
    assert record.levelno == logging.INFO
    assert record.filename == "trace_malloc.py"
    m = re.fullmatch(r'TraceMalloc memory delta: (-?[\d,]+) for "example_decorator_for_documentation\(\)"',
                     record.getMessage())
    assert m, record.getMessage()
    assert re.fullmatch(r"\d{1,3}(,\d{3})+", m.group(1))
    delta = int(m.group(1).replace(",", ""))
    assert abs(delta - _truth(keep, 56, keep)) <= 1024
    assert not tracemalloc.is_tracing()


def test_decorator_logs_and_propagates_exceptions(caplog):
    @trace_malloc.trace_malloc_log("debug")
    def fails():
        raise ValueError("inner")

    with caplog.at_level(logging.DEBUG, logger="pymemtrace.trace_malloc"):
        with pytest.raises(ValueError, match="inner"):
            fails()
    assert any('for "fails()"' in r.getMessage() and r.levelno == logging.DEBUG
               for r in caplog.records)
    assert not tracemalloc.is_tracing()


@pytest.mark.parametrize("bad,exc", [(None, TypeError), (1.5, TypeError), ("LOUD", ValueError),
                                     (-1, ValueError)])
def test_decorator_bad_log_level(bad, exc):
    with pytest.raises(exc, match="log_level"):
        trace_malloc.trace_malloc_log(bad)


def test_seed_example_runs_verbatim():
    out = subprocess.run([sys.executable, str(EXAMPLES / "ex_trace_malloc.py")],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    lines = out.splitlines()
    assert lines[0] == "example_trace_malloc_for_documentation()"
    assert re.fullmatch(r" tm\.memory_start=\d+", lines[1])
    assert re.fullmatch(r"tm\.memory_finish=\d+", lines[2])
    diff = int(re.fullmatch(r"         tm\.diff=(\d+)", lines[3]).group(1))
    assert abs(diff - 8 * (MIB + sys.getsizeof(" ") - 1) - 64) <= 1024
    # 8 MiB of strings plus the list and, before 3.11, the heap-allocated frames: 8192 or 8193 KiB
    assert re.match(r".*ex_trace_malloc\.py:0: size=819[23] KiB \(\+819[23] KiB\), count=\d+ \(\+\d+\)", lines[4])
    net = lines[lines.index("net_statistics:") + 1:]
    assert not any("tracemalloc.py" in line for line in net)
    assert any("tracemalloc.py" in line for line in lines[4:lines.index("net_statistics:")])
    assert re.search(r'trace_malloc\.py#\d+ .* INFO +- TraceMalloc memory delta: \d{1,3}(,\d{3})+ '
                     r'for "example_decorator_for_documentation\(\)"', out)
