"""trace_malloc: the original pymemtrace's names (net_statistics(), TRACE_ON, ...) beside ours."""
import logging
import sys
import tracemalloc

import pytest

from pymemtrace import trace_malloc
# Every test starts and must end with tracemalloc off (the autouse fixture there).
from test_trace_malloc import tracemalloc_off  # noqa: F401


def _block():
    kept = []
    with trace_malloc.TraceMalloc("lineno") as tm:
        kept.append(b"x" * 100_000)
    return tm, kept


def test_net_statistics_is_a_list_and_callable():
    tm, kept = _block()
    as_attr = tm.net_statistics
    as_call = tm.net_statistics()
    assert isinstance(as_attr, list) and as_call is as_attr
    assert sum(s.size_diff for s in as_call) == tm.diff
    # The 100 kB the block kept is there, and nothing from tracemalloc's own file.
    assert any(s.size_diff >= 100_000 and s.traceback[0].filename == __file__ for s in as_call)
    assert all(s.traceback[0].filename != tracemalloc.__file__ for s in as_call)


def test_original_attribute_names():
    tm, _ = _block()
    assert tm.tracemalloc_snapshot_start is tm.snapshot_start
    assert tm.tracemalloc_snapshot_finish is tm.snapshot_finish
    assert isinstance(tm.tracemalloc_snapshot_finish, tracemalloc.Snapshot)
    assert trace_malloc.TraceMalloc.ALLOWED_GRANULARITY == ("filename", "lineno", "traceback")
    with pytest.raises(ValueError, match="statistics_granularity"):
        trace_malloc.TraceMalloc("function")


def test_trace_on_false_switches_every_instance_and_the_decorator_off(monkeypatch, caplog):
    monkeypatch.setattr(trace_malloc.TraceMalloc, "TRACE_ON", False)
    with trace_malloc.TraceMalloc() as tm:
        assert not tracemalloc.is_tracing()
        data = [b"y" * 1000]
    assert tm.diff == -sys.maxsize - 1 == trace_malloc.DIFF_WHEN_OFF
    assert tm.statistics == [] and tm.net_statistics() == []
    assert tm.tracemalloc_memory_usage is None
    assert "TRACE_ON" in repr(tm)

    @trace_malloc.trace_malloc_log(logging.INFO)
    def work():
        return len(data)

    with caplog.at_level(logging.INFO, logger="pymemtrace.trace_malloc"):
        assert work() == 1
    assert not caplog.records
    monkeypatch.setattr(trace_malloc.TraceMalloc, "TRACE_ON", True)
    with caplog.at_level(logging.INFO, logger="pymemtrace.trace_malloc"):
        assert work() == 1
    assert "TraceMalloc memory delta" in caplog.text


def test_tracemalloc_left_as_found_unlike_the_original():
    # The original started tracemalloc in __init__ and never stopped it.
    tm = trace_malloc.TraceMalloc()
    assert not tracemalloc.is_tracing()
    with tm:
        assert tracemalloc.is_tracing()
    assert not tracemalloc.is_tracing()
