"""`pymemtrace malloc --stacks`: threads told apart.

Every stack of a `--stacks` (or `--native`) capture hangs from its thread's
THREAD record (OS thread id and name), so the reports split by thread and
`--thread ID` keeps one; a capture without `--stacks` records no threads and
`--thread` says so.
"""
import json

import pytest

from malloc_capture import cli, trace
from malloc_e2e import skip_if_sanitized
from pymemtrace.readers.malloc_stacks import load_stacks

PROGRAM = """\
    import threading
    keep = []
    ids = {}

    def alpha():
        ids["alpha"] = threading.get_native_id()
        for i in range(2000):
            keep.append(bytearray(3000))

    def beta():
        ids["beta"] = threading.get_native_id()
        for i in range(1000):
            keep.append(bytearray(5000))

    ts = [threading.Thread(target=alpha), threading.Thread(target=beta)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(ids["alpha"], ids["beta"])
    """



@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    skip_if_sanitized()
    d = tmp_path_factory.mktemp("threads")
    out = {}
    for name, flags in (("stacks", ["--stacks"]), ("plain", [])):
        cap, _, stdout = trace(d, name, PROGRAM, *flags)
        out[name] = (cap, [int(x) for x in stdout.split()[-2:]])
    return out


def fn_bytes(r, function):
    return sum(f["allocated_bytes"] for f in r["functions"] if f["function"] == function)


def test_stacks_capture_splits_threads(captures):
    cap, (a, b) = captures["stacks"]
    r = load_stacks(str(cap))
    ids = {t["id"] for t in r["threads"]}
    assert {a, b} <= ids
    only_a = load_stacks(str(cap), thread=a)
    assert fn_bytes(only_a, "alpha") >= 2000 * 3000 and fn_bytes(only_a, "beta") == 0
    only_b = load_stacks(str(cap), thread=b)
    assert fn_bytes(only_b, "beta") >= 1000 * 5000 and fn_bytes(only_b, "alpha") == 0
    d = json.loads(cli("report", str(cap), "--json", "--thread", str(b)).stdout)
    assert d["stacks"] and all(st["thread"] == b for st in d["stacks"]), d["stacks"][:2]
    text = cli("report", str(cap), "--view", "summary").stdout
    assert f"{a} " in text and f"{b} " in text


def test_plain_capture_says_threads_are_not_recorded(captures):
    cap, (a, _) = captures["plain"]
    bad = cli("report", str(cap), "--thread", str(a), check=False)
    assert bad.returncode == 2 and "none recorded" in bad.stderr


# A thread's own high-water mark: alpha's 12 MB come and go first (the process's
# peak, when beta holds nothing), then beta builds 3 MB and keeps them.
LATER = """\
    import threading
    keep = []
    ids = {}

    def alpha():
        ids["alpha"] = threading.get_native_id()
        tmp = [bytearray(4000) for i in range(3000)]
        del tmp

    def beta():
        ids["beta"] = threading.get_native_id()
        for i in range(600):
            keep.append(bytearray(5000))

    for f in (alpha, beta):
        t = threading.Thread(target=f)
        t.start()
        t.join()
    print(ids["alpha"], ids["beta"])
    """


def test_thread_peak_is_its_own_high_water_mark(tmp_path):
    skip_if_sanitized()
    cap, _, stdout = trace(tmp_path, "later", LATER, "--stacks")
    a, b = (int(x) for x in stdout.split()[-2:])
    whole = load_stacks(str(cap))
    assert whole["peak"]["bytes"] >= 3000 * 4000
    assert not whole["live_peak"]["of_thread"]
    only_b = load_stacks(str(cap), thread=b)
    assert only_b["live_peak"]["of_thread"]
    # at the process's peak beta held nothing; its own peak is after it, with its 3 MB
    assert only_b["live_peak"]["event"] > whole["peak"]["event"]
    assert only_b["peak_live_bytes"] >= 600 * 5000
    assert fn_bytes(only_b, "beta") >= 600 * 5000
    peak_of_beta = sum(st["peak_bytes"] for st in only_b["stacks"])
    assert peak_of_beta == only_b["peak_live_bytes"]
    text = cli("report", str(cap), "--thread", str(b)).stdout
    assert f"thread {b}'s own high-water mark: {only_b['peak_live_bytes']:,} bytes" in text
    assert "beta" in text
    d = json.loads(cli("report", str(cap), "--json", "--thread", str(b)).stdout)
    assert d["thread_peak"]["bytes"] == only_b["peak_live_bytes"]
    assert d["thread_peak"]["event"] == only_b["live_peak"]["event"]
    # alpha's own peak is the process's
    only_a = load_stacks(str(cap), thread=a)
    assert only_a["peak_live_bytes"] >= 3000 * 4000
    # the flame graph's page: its peak view is at beta's peak, marked on the heap chart
    page = tmp_path / "later.html"
    cli("flamegraph", str(cap), "--thread", str(b), "-o", str(page))
    html = page.read_text()
    mark = (f'"thread_peak":{{"thread":{b},"event":{only_b["live_peak"]["event"]},'
            f'"bytes":{only_b["peak_live_bytes"]}}}')
    assert mark in html
    assert f"thread {b}'s own high-water mark" in html
    cli("flamegraph", str(cap), "-o", str(page))
    assert '"thread_peak":null' in page.read_text()
