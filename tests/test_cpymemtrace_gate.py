"""The read gate of cPyMemTrace (src/core/rssgate.h) on allocation churn: RSS is read
rarely while the allocator reuses freed memory, and every real change is still logged
by the counters alone (the event and time bounds switched off)."""
import subprocess
import sys

import pytest

from pymemtrace import cPyMemTrace
from pymemtrace.readers import cpmt_log

MIB = 1024 ** 2


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _append(lst, s):
    lst.append(s)


def churn(rounds, sizes=(1500, 700, 1900, 40, 1100)):
    lst = []
    for i in range(rounds * 1000):
        _append(lst, " " * sizes[i % len(sizes)])
        if len(lst) == 1000:
            lst.clear()


def test_reuse_of_freed_memory_reads_rss_rarely():
    churn(1)    # the heap has room for the rounds below
    with cPyMemTrace.Profile(filepath="c.log") as p:
        churn(20)
    # 20 000 blocks of 40..1900 bytes made and freed: glibc reuses the chunks
    assert p.events > 40000
    assert p.rss_reads < p.events / 20
    assert cpmt_log.read("c.log").complete


GROW = """
from pymemtrace import cPyMemTrace
cPyMemTrace.set_gate_limits(events=0, seconds=0)
def _append(lst, s):
    lst.append(s)
keep, n = [], 1000
with cPyMemTrace.Profile(filepath="g.log"):
    for _ in range(8 * 1024):
        _append(keep, " " * n)          # 8 MiB in blocks malloc serves from its heap
"""


def test_new_heap_memory_is_logged_by_the_counters():
    # (in a fresh interpreter: freed heap left by other tests would be reused)
    subprocess.run([sys.executable, "-c", GROW], check=True)
    log = cpmt_log.read("g.log")
    rises = sum(r.d_rss for r in log.next_records[1:] if r.d_rss > 0)
    assert rises >= 7 * MIB


TRIM = """
from pymemtrace import cPyMemTrace
cPyMemTrace.set_gate_limits(events=0, seconds=0)
n = 3000
with cPyMemTrace.Profile(filepath="f.log"):     # its buffer first, then 12 MiB on top
    keep = [" " * n for _ in range(4 * 1024)]
    before = cPyMemTrace.rss()
    keep.clear()                                # freed: malloc trims its heap
    after = cPyMemTrace.rss()
print(before - after)
"""


def test_heap_given_back_is_logged_by_the_counters():
    out = subprocess.run([sys.executable, "-c", TRIM], capture_output=True, text=True,
                         check=True).stdout
    given_back = int(out)
    if given_back < 4 * MIB:
        pytest.skip(f"malloc kept the freed heap here (RSS fell by {given_back} bytes)")
    log = cpmt_log.read("f.log")
    falls = sum(r.d_rss for r in log.next_records[1:] if r.d_rss < 0)
    assert falls <= -given_back + 256 * 1024
