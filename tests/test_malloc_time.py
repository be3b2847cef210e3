"""`pymemtrace malloc`: the capture's clock and RSS (TIME records, format 4).

A program works, sleeps, then touches a big buffer and works again: the
time view, `report --json`'s `time`, `--range` in seconds and the flame
graph's slider place each phase at the seconds it ran, and the process's RSS
rises with the touched buffer.
"""
import json

import pytest

from malloc_capture import HEADER_SIZE, cli, read_header, trace
from malloc_e2e import skip_if_sanitized
from pymemtrace.readers.malloc_stacks import load_stacks, parse_seconds
from pymemtrace.reporters.flamegraph import page_data

SLEEP = 0.8
BIG = 120 * 1024 * 1024

PROGRAM = f"""\
    import time
    keep = []

    def phase1():
        for i in range(20000):
            keep.append(str(i) * 3)

    def phase2():
        big = bytearray({BIG})
        for i in range(0, len(big), 4096):
            big[i] = 1          # touched: resident from here
        for i in range(20000):
            keep.append(str(i) * 3)
        return big

    phase1()
    a = time.time()
    time.sleep({SLEEP})
    b = time.time()
    big = phase2()
    print(a, b)
    """



@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    skip_if_sanitized()
    cap, _, out = trace(tmp_path_factory.mktemp("time"), "phases", PROGRAM, "--stacks",
                        "--python-malloc")
    # the sleep's middle, in seconds since the capture opened (its header's
    # start is wall-clock time, as the program's stamps): under load the
    # interpreter's start and phase1 may take any time, the sleep stays 0.8 s
    a, b = (float(x) for x in out.split()[-2:])
    start = read_header(open(cap, "rb").read(HEADER_SIZE))["start_ns"] / 1e9
    return cap, (a + b) / 2 - start, b - start


def count(r, function):
    return sum(f["allocated_count"] for f in r["functions"] if f["function"] == function)


def test_phases_at_their_seconds(capture):
    cap, mid, woke = capture
    r = load_stacks(str(cap), points=400)
    clock = r["clock"]
    assert clock is not None
    assert clock["end_s"] >= woke - 0.05, (clock, woke)
    # the big buffer is made after the sleep: the peak is there, not before
    assert clock["peak_s"] >= mid, (clock, mid)
    assert r["peak"]["bytes"] >= BIG
    before = [p for p in r["points"] if p[2] < mid]
    assert before and max(p[1] for p in before) < BIG / 4
    # by seconds: phase1 before the sleep, phase2 after it; a thread's first
    # few events after a pause may carry the time before it (at most 3)
    early = load_stacks(str(cap), range_spec=f":{mid:.3f}s")
    late = load_stacks(str(cap), range_spec=f"{mid:.3f}s:")
    assert count(early, "phase1") >= 20000 and count(late, "phase1") == 0
    assert count(late, "phase2") >= 20000 and count(early, "phase2") <= 3
    assert early["range"][1] == late["range"][0]


def test_rss_rises_with_a_touched_buffer(capture):
    cap, mid, _ = capture
    r = load_stacks(str(cap), points=400)
    clock = r["clock"]
    assert clock["rss_peak"] >= BIG, clock
    assert clock["rss_peak_s"] >= mid
    early = [p[3] for p in r["points"] if p[3] and p[2] < mid]
    assert early and max(early) < BIG / 2


def test_time_view_json_and_flame_graph(capture):
    cap, mid, _ = capture
    text = cli("report", str(cap), "--view", "time").stdout
    assert "over time; x: seconds" in text and "RSS of the process" in text
    assert "Peak (^)" in text and " s (after event" in text
    d = json.loads(cli("report", str(cap), "--json").stdout)
    t = d["time"]
    assert t["peak_seconds"] >= mid and t["rss_peak_bytes"] >= BIG
    assert all("seconds" in h for h in t["heap"]) and t["rss"]
    assert max(x["bytes"] for x in t["rss"]) == t["rss_peak_bytes"]
    page = page_data(load_stacks(str(cap), points=800, slices=64), "t", "f")
    assert page["slice_time"][0] <= mid <= page["slice_time"][-1]
    assert page["end_s"] >= mid


def test_range_in_seconds_errors(capture):
    cap, _, _ = capture
    bad = cli("report", str(cap), "--range", "1s:5", check=False)
    assert bad.returncode == 2 and "not a time in seconds" in bad.stderr
    bad = cli("report", str(cap), "--range", "3s:1s", check=False)
    assert bad.returncode == 2 and "start comes after its end" in bad.stderr
    assert parse_seconds("0.5s:") == (500000000, None)
    assert parse_seconds("10:20") is None
