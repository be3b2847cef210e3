"""pymemtrace malloc report / flamegraph / export (issue 12): views by whole stack.

One traced program (a leak made in a list comprehension inside a named
function, a 30 MB spike freed before exit, churn) is captured with --stacks;
every view, the JSON, the flame graph page (rendered in headless Chromium
when it is installed) and the pprof and collapsed exports must show the
right function for the right question: the spike for the peak, the leaking
function for leaks.
"""
import gzip
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap

import pytest

from malloc_capture import cli
from malloc_e2e import line_of, skip_if_sanitized, skip_under_asan
from pymemtrace.readers.malloc_stacks import frames_of, load_stacks, parse_range

needs_preload = skip_under_asan()

PROGRAM = """\
    import os

    def leaky(n):
        return [bytearray(10_000 + i) for i in range(n)]  # LEAK

    def spike():
        big = bytearray(30_000_000)  # SPIKE
        return len(big)

    def churn():
        for i in range(2000):
            b = bytearray(5000)  # CHURN

    keep = leaky(300)
    spike()
    churn()
    os._exit(0)   # no interpreter shutdown: what the program holds is live at exit
    """



@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    skip_if_sanitized()
    d = tmp_path_factory.mktemp("reports")
    script = d / "app.py"
    script.write_text(textwrap.dedent(PROGRAM))
    cap = d / "app.cap"
    cli("--stacks", "-o", str(cap), "--", sys.executable, str(script))
    return cap, script


def names(frames):
    return [f[0] for f in frames]


@needs_preload
def test_peak_view_names_the_spike_and_leaks_view_the_leaking_function(capture):
    cap, script = capture
    r = load_stacks(str(cap))
    assert r["stacks_recorded"] and r["peak"]["bytes"] >= 30_000_000
    peak = sorted(r["stacks"], key=lambda s: -s["peak_bytes"])[0]
    frames = frames_of(r, peak["frame"])
    assert frames[0][0] == "spike" and frames[0][2] == line_of(script, "SPIKE")
    assert frames[-1][0] == "<module>" and peak["peak_bytes"] >= 30_000_000
    assert peak["leaked_bytes"] == 0            # freed before exit
    leak = sorted(r["stacks"], key=lambda s: -s["leaked_bytes"])[0]
    lf = names(frames_of(r, leak["frame"]))
    assert "leaky" in lf and "spike" not in lf
    # inclusive by function: leaky holds its comprehension's 50 buffers
    fn = {f["function"]: f for f in r["functions"]}
    assert fn["leaky"]["leaked_bytes"] >= 300 * 10_000
    assert fn["leaky"]["leaked_count"] >= 300
    assert fn["<module>"]["allocated_bytes"] >= fn["leaky"]["allocated_bytes"] + 30_000_000
    assert fn["churn"]["allocated_count"] >= 2000 and fn["churn"]["leaked_bytes"] < 10_000

    text = cli("report", str(cap)).stdout
    assert "view: peak" in text and "High-water mark" in text
    first = text.split("Top ", 2)[1]            # the stacks table comes first
    assert f"spike ({script}:{line_of(script, 'SPIKE')})" in first
    text = cli("report", str(cap), "--view", "leaks").stdout
    stacks_part = text.split("Top ", 2)[1]
    assert "leaky" in stacks_part and "spike (" not in stacks_part
    text = cli("report", str(cap), "--view", "all").stdout
    assert "churn" in text and "Top 20 Python sites by bytes allocated" in text


@needs_preload
def test_time_summary_range_and_thread(capture):
    cap, _ = capture
    text = cli("report", str(cap), "--view", "time").stdout
    assert "Peak (^)" in text and "^" in text.split("Peak (^)")[0]
    text = cli("report", str(cap), "--view", "summary").stdout
    assert "By allocator:" in text and "malloc" in text and "By size:" in text
    assert "16.0 KiB" in text                  # the 10,000-byte buffers' class
    r = load_stacks(str(cap))
    # the first half of the events: the leak is made there, the churn is not
    half = load_stacks(str(cap), range_spec=f":{r['peak']['event']}")
    fn = {f["function"]: f for f in half["functions"]}
    assert "churn" not in fn or fn["churn"]["allocated_count"] == 0
    assert half["leaked_bytes"] >= 300 * 10_000 + 30_000_000   # the spike is live at its end
    empty = cli("report", str(cap), "--range", "0:0", "--json")
    assert json.loads(empty.stdout)["stacks"] == []
    bad = cli("report", str(cap), "--range", "9:3", check=False)
    assert bad.returncode == 2 and "start comes after its end" in bad.stderr
    bad = cli("report", str(cap), "--range", "abc", check=False)
    assert bad.returncode == 2 and "START:END" in bad.stderr
    bad = cli("report", str(cap), "--thread", "4242", check=False)
    assert bad.returncode == 2 and "no such thread" in bad.stderr
    # the capture records its threads: no stack is said to come from a capture that does not
    text = cli("report", str(cap), "--top", "200").stdout
    assert "does not tell threads apart" not in text
    assert re.search(r"thread \d+ ", text)
    assert "thread thread" not in text


def test_parse_range():
    assert parse_range(None, 10) == (0, 10)
    assert parse_range("25%:75%", 1000) == (250, 750)
    assert parse_range("5:", 10) == (5, 10)
    assert parse_range(":99", 10) == (0, 10)
    for bad in ("1:2:3", "x:", "-1:", "150%:"):
        with pytest.raises(ValueError):
            parse_range(bad, 10)


@needs_preload
def test_json_keeps_its_keys_and_adds_the_stacks(capture):
    cap, script = capture
    d = json.loads(cli("report", str(cap), "--json").stdout)
    for key in ("total_bytes", "peak_bytes", "by_python_site", "leaks", "stacks",
                "by_function_inclusive", "time", "summary"):
        assert key in d, key
    top = d["stacks"][0]
    assert top["frames"][0]["function"] == "spike"
    assert top["frames"][0]["file"] == str(script)
    assert top["peak_bytes"] >= 30_000_000
    d = json.loads(cli("report", str(cap), "--json", "--view", "leaks").stdout)
    assert "leaky" in [f["function"] for f in d["stacks"][0]["frames"]]
    assert d["time"]["peak_bytes"] == d["peak_bytes"] or d["time"]["peak_bytes"] > 0
    assert any(s["bytes"] >= 30_000_000 for s in d["peak_by_python_site"])


def _pb_fields(buf):
    """(field, value) of a protobuf message: ints for varints, bytes otherwise."""
    out, i = [], 0

    def varint():
        nonlocal i
        v = shift = 0
        while True:
            b = buf[i]
            i += 1
            v |= (b & 0x7f) << shift
            shift += 7
            if b < 0x80:
                return v

    while i < len(buf):
        key = varint()
        if key & 7 == 0:
            out.append((key >> 3, varint()))
        elif key & 7 == 2:
            n = varint()
            out.append((key >> 3, buf[i:i + n]))
            i += n
        else:
            raise AssertionError(f"wire type {key & 7}")
    return out


def _packed(buf):
    vals, v, shift = [], 0, 0
    for b in buf:
        v |= (b & 0x7f) << shift
        shift += 7
        if b < 0x80:
            vals.append(v)
            v = shift = 0
    return vals


@needs_preload
def test_pprof_export_reads_back(capture, tmp_path):
    cap, _ = capture
    out = tmp_path / "app.pb.gz"
    cli("export", str(cap), "-o", str(out))
    prof = _pb_fields(gzip.decompress(out.read_bytes()))
    strings = [v.decode() for f, v in prof if f == 6]
    types = [[strings[x] for _, x in _pb_fields(v)] for f, v in prof if f == 1]
    assert types == [["alloc_objects", "count"], ["alloc_space", "bytes"],
                     ["inuse_objects", "count"], ["inuse_space", "bytes"]]
    funcs = {}
    for f, v in prof:
        if f == 5:
            d = dict(_pb_fields(v))
            funcs[d[1]] = strings[d[2]]
    locs = {}
    for f, v in prof:
        if f == 4:
            d = _pb_fields(v)
            line = dict(_pb_fields(dict(d)[4]))
            locs[dict(d)[1]] = funcs[line[1]]
    top = None
    for f, v in prof:
        if f == 2:
            d = _pb_fields(v)
            ids = _packed(dict(d)[1])
            values = _packed(dict(d)[2])
            if top is None or values[3] > top[1][3]:
                top = ([locs[x] for x in ids], values)
    assert top[0][0] == "spike" and top[1][3] >= 30_000_000   # inuse_space: at the peak
    go = shutil.which("go")
    if go is None:
        pytest.skip("go (Debian's golang-go) is not installed: go tool pprof not tried")
    env = dict(os.environ, HOME=str(tmp_path), GOCACHE=str(tmp_path / "gocache"),
               GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
    p = subprocess.run([go, "tool", "pprof", "-top", "-sample_index=alloc_space", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "spike" in p.stdout and "leaky" in p.stdout and "churn" in p.stdout


@needs_preload
def test_collapsed_export(capture, tmp_path):
    cap, _ = capture
    out = tmp_path / "leaks.txt"
    cli("export", str(cap), "--format", "collapsed", "--view", "leaks", "-o", str(out))
    lines = out.read_text().splitlines()
    assert lines and all(ln.rsplit(" ", 1)[1].isdigit() for ln in lines)
    leaky = [ln for ln in lines if "leaky (" in ln]
    assert leaky and sum(int(ln.rsplit(" ", 1)[1]) for ln in leaky) >= 300 * 10_000
    assert all(ln.startswith("<module> (") for ln in leaky)   # outermost first


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@needs_preload
def test_flamegraph_is_one_file_that_renders(capture, tmp_path):
    cap, _ = capture
    page = tmp_path / "app.html"
    cli("flamegraph", str(cap), "-o", str(page))
    html = page.read_text()
    assert "<script src" not in html and "<link" not in html and "http://" not in html
    assert "https://" not in html and '"spike"' in html
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (make system-deps installs it as root)")
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900",
            "--virtual-time-budget=5000"]
    dom = subprocess.run(args + ["--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-rendered="yes"' in dom.stdout, dom.stderr[-2000:]
    frames = dom.stdout.count('class="frame')
    assert frames >= 3
    assert 'data-name="spike' in dom.stdout                  # the peak view, drawn
    assert "live at the high-water mark" in dom.stdout
    # the leaks view (chosen by the address, as a click would): the leaking function, not the spike
    dom = subprocess.run(args + ["--dump-dom", page.as_uri() + "#view=leaks&search=leaky"],
                         capture_output=True, text=True, timeout=180)
    assert 'data-rendered="yes"' in dom.stdout and "still live at the end" in dom.stdout
    assert 'data-name="leaky' in dom.stdout and 'data-name="spike' not in dom.stdout
    assert 'class="frame match"' in dom.stdout                 # the search marked it
    # a time range: the first three of its 64 slices
    dom = subprocess.run(args + ["--dump-dom", page.as_uri() + "#view=range&from=0&to=2"],
                         capture_output=True, text=True, timeout=180)
    assert 'data-rendered="yes"' in dom.stdout and "allocated, events 0 to" in dom.stdout
    shot = tmp_path / "app.png"
    subprocess.run(args + [f"--screenshot={shot}", page.as_uri()], capture_output=True,
                   timeout=180)
    assert shot.exists() and shot.stat().st_size > 5000
    keep = os.environ.get("PYMEMTRACE_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def test_bad_captures_give_one_clear_line(tmp_path):
    bad = tmp_path / "bad.cap"
    bad.write_bytes(b"not a capture at all" * 4)
    for args in (["report", str(bad)], ["report", str(bad), "--view", "leaks", "--json"],
                 ["flamegraph", str(bad), "-o", str(tmp_path / "x.html")],
                 ["export", str(bad), "-o", str(tmp_path / "x.pb.gz")]):
        p = cli(*args, check=False)
        assert p.returncode == 2 and "bad magic" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "x.pb.gz").exists()
    p = cli("flamegraph", str(tmp_path / "nope.cap"), check=False)
    assert p.returncode == 2 and "no such capture" in p.stderr


def test_outputs_that_are_not_regular_files(capture, tmp_path):
    """-o /dev/full is a full disk, said in one line (it once replaced the device node with a
    regular file and said it had written); -o /dev/stdout writes into the pipe."""
    cap, _ = capture
    full = tmp_path / "full"            # a node of its own, so a regression cannot touch /dev/full
    try:
        os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except OSError as err:
        pytest.skip(f"cannot make a /dev/full device node here ({err.strerror}; needs root)")
    for args in (["export", str(cap), "-o", str(full)],
                 ["flamegraph", str(cap), "-o", str(full)]):
        p = cli(*args, check=False)
        assert p.returncode == 2 and f"cannot write {full}: No space left" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr
        assert stat.S_ISCHR(os.stat(full).st_mode)
    p = cli("export", str(cap), "--format", "collapsed", "-o", "/dev/stdout")
    first = p.stdout.splitlines()[0]
    assert p.returncode == 0 and ";" in first and first.split()[-1].isdigit()


@needs_preload
def test_a_cut_capture_still_reports(capture, tmp_path):
    cap, _ = capture
    data = cap.read_bytes()
    for cut in (len(data) // 3, len(data) // 2 + 5, len(data) - 7):
        part = tmp_path / f"cut{cut}.cap"
        part.write_bytes(data[:cut])
        for view in ("peak", "leaks", "time", "summary"):
            p = cli("report", str(part), "--view", view, check=False)
            assert p.returncode == 0, p.stderr
            assert "  warning: " in p.stdout     # what is missing is said
        cli("flamegraph", str(part), "-o", str(tmp_path / "cut.html"))
        cli("export", str(part), "-o", str(tmp_path / "cut.pb.gz"))
