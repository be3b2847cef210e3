"""pymemtrace malloc: the LD_PRELOAD tracer end to end, against known allocations
(exact bytes and sites, the leak, the JSON and text reports, tracemalloc's view, threads),
and the command's own behaviour (exit code and output kept, commands that cannot run).
The same tracer elsewhere: test_malloc_reader.py (captures written by hand),
test_malloc_entry_points.py, test_malloc_processes.py and the other test_malloc_*.py;
shared helpers in malloc_e2e.py."""
import json
import textwrap

from pymemtrace.readers.malloc_capture import load
from malloc_e2e import needs_preload, PY, cli, trace, line_of, sites


KNOWN = """\
    import ctypes
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    N = 7
    SIZE = 777_773

    def c_allocs():
        ptrs = []
        for _ in range(N):
            ptrs.append(libc.malloc(SIZE))  # C-MALLOC
        return ptrs

    def c_frees(ptrs):
        for p in ptrs:
            libc.free(p)

    def leak():
        return libc.malloc(424_243)  # LEAK

    def py_big():
        a = bytearray(10_000_000)  # PY-BIG
        b = bytearray(5_000_000)   # PY-SMALLER
        return len(a) + len(b)

    c_frees(c_allocs())
    leak()
    py_big()
    """


@needs_preload
def test_known_bytes_exact_sites_and_leak(tmp_path):
    p, cap, script = trace(tmp_path, KNOWN)
    assert p.returncode == 0, p.stderr
    r = load(str(cap))
    assert r["complete"] and r["python_status"] == "on", r["warnings"]
    by_line = {(s["function"], s["line"]): s for s in sites(r, script)}
    c = by_line[("c_allocs", line_of(script, "C-MALLOC"))]
    # ctypes' own call machinery allocates nothing from malloc at that line
    assert (c["malloc_bytes"], c["malloc_count"]) == (7 * 777_773, 7)
    assert c["live_count"] == 0      # all freed by c_frees
    big = by_line[("py_big", line_of(script, "PY-BIG"))]
    smaller = by_line[("py_big", line_of(script, "PY-SMALLER"))]
    # a bytearray's buffer is one malloc of len + 1 (its trailing NUL)
    assert (big["malloc_bytes"], big["malloc_count"]) == (10_000_001, 1)
    assert (smaller["malloc_bytes"], smaller["malloc_count"]) == (5_000_001, 1)
    assert r["peak_bytes"] >= 15_000_002
    assert r["total_bytes"] >= 7 * 777_773 + 424_243 + 15_000_002
    # the deliberate leak, at its function and line; nothing the program freed
    leaks = {(s["file"], s["function"], s["line"]): s for s in r["leaks"]}
    lk = leaks[(str(script), "leak", line_of(script, "LEAK"))]
    assert (lk["bytes"], lk["count"]) == (424_243, 1)
    assert not [k for k in leaks if k[0] == str(script) and k[1] in ("c_allocs", "py_big")]
    # the largest single allocations, in order, with their state
    top = r["largest"][:2]
    assert [(b["size"], b["function"], b["freed"]) for b in top] == [
        (10_000_001, "py_big", True), (5_000_001, "py_big", True)]


@needs_preload
def test_json_report_shape(tmp_path):
    p, cap, script = trace(tmp_path, KNOWN)
    assert p.returncode == 0, p.stderr
    rep = cli("report", str(cap), "--json", check=True)
    d = json.loads(rep.stdout)
    for key in ("total_bytes", "peak_bytes", "by_python_site", "leaks"):
        assert key in d
    for s in d["by_python_site"] + d["leaks"]:
        assert {"file", "line", "function", "bytes", "count"} <= set(s)
    assert any(s["function"] == "leak" and s["bytes"] == 424_243 for s in d["leaks"])
    fn = {(f["file"], f["function"]): f for f in d["by_python_function"]}
    big = fn[(str(script), "py_big")]
    assert (big["malloc_bytes"], big["lines"]) == (15_000_002, 2)
    text = cli("report", str(cap), "--view", "all", check=True).stdout
    assert f"{script}:{line_of(script, 'PY-BIG')} py_big" in text
    assert f"{script} py_big" in text and "Top 20 Python functions" in text
    assert "Leak candidates" in text and "Largest single allocations" in text


@needs_preload
def test_cross_check_with_tracemalloc(tmp_path):
    """The same bytearray buffers, seen by tracemalloc in-process and by the tracer."""
    src = """\
    import tracemalloc
    def make():
        return [bytearray(1_234_567) for _ in range(3)]  # MAKE
    tracemalloc.start()
    keep = make()
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    mine = [t for t in snap.traces if t.traceback[0].lineno == %d and t.size > 1_000_000]
    print(sum(t.size for t in mine), len(mine))
    """
    script = tmp_path / "tm.py"
    script.write_text(textwrap.dedent(src))
    src = src % line_of(script, "MAKE")
    p, cap, script = trace(tmp_path, src, name="tm.py")
    assert p.returncode == 0, p.stderr
    tm_bytes, tm_count = map(int, p.stdout.split())
    r = load(str(cap))
    assert (tm_bytes, tm_count) == (3 * 1_234_568, 3)
    # tracemalloc's own bookkeeping mallocs land on the same line (it runs there
    # too), so compare the big blocks: the largest allocations of the capture.
    ours = [b["size"] for b in r["largest"]
            if (b["file"], b["line"]) == (str(script), line_of(script, "MAKE"))
            and b["size"] > 1_000_000]
    assert (sum(ours), len(ours)) == (tm_bytes, tm_count)


@needs_preload
def test_threads_attributed_to_their_own_frames(tmp_path):
    src = """\
    import threading
    def worker(n):
        keep.append(bytearray(n))  # WORKER
    def main_side():
        keep.append(bytearray(2_222_221))  # MAIN
    keep = []
    ts = [threading.Thread(target=worker, args=(3_000_000 + i,)) for i in range(4)]
    for t in ts: t.start()
    main_side()
    for t in ts: t.join()
    """
    p, cap, script = trace(tmp_path, src)
    assert p.returncode == 0, p.stderr
    r = load(str(cap))
    w = [s for s in sites(r, script, "worker") if s["line"] == line_of(script, "WORKER")]
    m = [s for s in sites(r, script, "main_side") if s["line"] == line_of(script, "MAIN")]
    assert w[0]["malloc_count"] == 4
    assert w[0]["malloc_bytes"] == sum(3_000_001 + i for i in range(4))
    assert (m[0]["malloc_bytes"], m[0]["malloc_count"]) == (2_222_222, 1)


@needs_preload
def test_exit_code_and_output_unchanged(tmp_path):
    p, cap, _ = trace(tmp_path, "import sys\nprint('hello from the program')\nsys.exit(7)\n")
    assert p.returncode == 7
    assert p.stdout == "hello from the program\n"
    assert cap.exists()


def test_command_not_found(tmp_path):
    p = cli("-o", str(tmp_path / "x.cap"), "--", "no-such-command-pymemtrace")
    assert p.returncode == 127
    assert "command not found: no-such-command-pymemtrace" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "x.cap").exists()


def test_command_not_executable(tmp_path):
    script = tmp_path / "plain.py"
    script.write_text("print('hi')\n")
    p = cli("-o", str(tmp_path / "x.cap"), "--", str(script))
    assert p.returncode == 126
    assert f"cannot run {script}: it is not executable" in p.stderr


def test_unwritable_capture_fails_before_running(tmp_path):
    marker = tmp_path / "ran"
    p = cli("-o", str(tmp_path / "no" / "such" / "dir" / "x.cap"), "--",
            PY, "-c", f"open({str(marker)!r}, 'w')")
    assert p.returncode == 2
    assert "cannot write the capture" in p.stderr and "No such file or directory" in p.stderr
    assert "Traceback" not in p.stderr
    assert not marker.exists()


def test_no_command_is_a_user_error():
    p = cli()
    assert p.returncode == 2 and "no command given" in p.stderr
