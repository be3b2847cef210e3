"""pymemtrace malloc: the LD_PRELOAD tracer end to end, against known allocations."""
import json
import os
import pathlib
import re
import struct
import subprocess
import sys
import textwrap

import pytest

import malloc_capture
from pymemtrace.malloc import LIBRARY
from pymemtrace.readers.malloc_capture import load

SANITIZE = os.environ.get("PYMEMTRACE_SANITIZE") == "1"
needs_preload = pytest.mark.skipif(
    SANITIZE, reason="the preload library is not meant to run under ASan's own malloc "
                     "interposition (its core C is sanitized through tests/c)")

PY = sys.executable


def cli(*args, cwd=None, check=False):
    p = subprocess.run([PY, "-m", "pymemtrace", "malloc", *args], capture_output=True,
                       text=True, cwd=cwd)
    if check and p.returncode != 0:
        raise AssertionError(f"rc={p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def trace(tmp_path, source, *extra, name="w.py", out="w.cap"):
    script = tmp_path / name
    script.write_text(textwrap.dedent(source))
    cap = tmp_path / out
    p = cli("-o", str(cap), *extra, "--", PY, str(script), cwd=tmp_path)
    return p, cap, script


def line_of(script, marker):
    """The line carrying the comment '# MARKER' (a whole word)."""
    for i, text in enumerate(script.read_text().splitlines(), 1):
        if re.search(r"# " + re.escape(marker) + r"(\s|$)", text):
            return i
    raise AssertionError(marker)


def in_comprehension(enclosing):
    """The function a list comprehension's allocations are attributed to: its own
    `<listcomp>` frame before 3.12, the enclosing function since (PEP 709 inlines it)."""
    return "<listcomp>" if sys.version_info < (3, 12) else enclosing


def sites(report, script, function=None):
    return [s for s in report["by_python_site"]
            if s["file"] == str(script) and (function is None or s["function"] == function)]


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


# ---- the reader on captures written by hand (no preload needed) ----------------

def synthetic(state=malloc_capture.EXIT):
    """Two 'threads' whose chunks are in the file out of order; a reused address."""
    t1 = malloc_capture.Chunk().code_def(1, "app.py", "f")
    t1.event(1, 1, 0x1000, 100, 1, 10).event(3, 16, 0x1000)
    t2 = malloc_capture.Chunk().code_def(2, "app.py", "g")
    (t2.event(2, 1, 0x2000, 50, 2, 20)
       .event(4, 1, 0x1000, 70, 2, 21)          # 0x1000 reused after its free
       .event(5, 5, 0x100000, 8192, 2, 22)      # an arena
       .event(6, 18, 0x101000, 4096))           # munmap of its second half
    return malloc_capture.header(state=state) + t2.padded() + t1.padded()


def write(tmp_path, data, name="s.cap"):
    f = tmp_path / name
    f.write_bytes(data)
    return str(f)


def test_reader_orders_events_across_thread_buffers(tmp_path):
    r = load(write(tmp_path, synthetic()))
    assert r["complete"] and r["warnings"] == []
    by = {(s["function"], s["line"]): s for s in r["by_python_site"]}
    assert by[("f", 10)]["bytes"] == 100 and by[("f", 10)]["live_count"] == 0
    assert by[("g", 21)]["live_bytes"] == 70     # the reuse is live, not freed
    assert by[("g", 22)]["mmap_bytes"] == 8192 and by[("g", 22)]["live_bytes"] == 4096
    assert r["total_bytes"] == 100 + 50 + 70 + 8192
    assert r["peak_bytes"] == 50 + 70 + 8192
    assert r["live_bytes"] == 50 + 70 + 4096


def test_reader_truncated_capture_reports_what_it_has(tmp_path):
    data = synthetic(state=malloc_capture.RUNNING)     # killed: no end in the header
    t1 = 128 + 4096
    last = len(malloc_capture.Chunk().code_def(1, "app.py", "f").event(1, 1, 0x1000, 100, 1, 10)
               .data)
    cut = data[:t1 + last + 1]      # the free's kind byte alone
    path = write(tmp_path, cut)
    r = load(path)
    assert not r["complete"] and r["trailing_bytes"] == 1 and r["events"] == 5
    assert any("no end" in w and "killed" in w for w in r["warnings"])
    p = cli("report", path)
    assert p.returncode == 0 and "warning: the capture has no end" in p.stdout


@pytest.mark.parametrize("data,message", [
    (b"", "empty capture file"),
    (b"hello world, not a capture at all" * 3, "bad magic"),
    (b"PMTMALC\0" + bytes(10), "cut short inside its header"),
    (b"PMTMALC\0" + struct.pack("<IIIIIIQII", 1, 64, 32, 0, 1, 1, 0, 0x01020304, 4096),
     "capture format version 1 is not supported: this pymemtrace reads version 4"),
    (b"PMTMALC\0" + struct.pack("<IIIIIIQII", 2, 64, 32, 2, 1, 1, 0, 0x01020304, 4096)
     + bytes(80), "capture format version 2 is not supported: this pymemtrace reads version 4"),
    (b"PMTMALC\0" + struct.pack("<IIIIIIQII", 3, 128, 32, 4, 1, 1, 0, 0x01020304, 4096)
     + bytes(128), "capture format version 3 is not supported: this pymemtrace reads version 4"),
])
def test_reader_rejects_bad_captures(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(ValueError, match=message):
        load(path)
    p = cli("report", path)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


def test_report_missing_file(tmp_path):
    p = cli("report", str(tmp_path / "nope.cap"))
    assert p.returncode == 2 and "no such capture" in p.stderr


# ---- every entry point, processes, native callers -------------------------------

ENTRY_POINTS = """\
    import ctypes, mmap
    libc = ctypes.CDLL(None)
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    for name, res, args in [("malloc", vp, [sz]), ("calloc", vp, [sz, sz]),
                            ("realloc", vp, [vp, sz]), ("reallocarray", vp, [vp, sz, sz]),
                            ("aligned_alloc", vp, [sz, sz]), ("memalign", vp, [sz, sz]),
                            ("valloc", vp, [sz]), ("pvalloc", vp, [sz]),
                            ("posix_memalign", ctypes.c_int, [ctypes.POINTER(vp), sz, sz]),
                            ("free", None, [vp]),
                            ("mmap", vp, [vp, sz, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                          ctypes.c_long]),
                            ("munmap", ctypes.c_int, [vp, sz])]:
        f = getattr(libc, name)
        f.restype, f.argtypes = res, args

    def every_entry_point():
        keep = []
        keep.append(libc.calloc(3, 100_003))                 # CALLOC
        p = libc.malloc(100_019)                             # GROW-MALLOC
        p = libc.realloc(p, 200_003)                         # REALLOC
        p = libc.reallocarray(p, 7, 50_021)                  # REALLOCARRAY
        libc.free(p)                                         # FREE
        out = vp()
        assert libc.posix_memalign(ctypes.byref(out), 64, 100_043) == 0  # POSIX-MEMALIGN
        keep.append(out.value)
        keep.append(libc.aligned_alloc(256, 100_096))        # ALIGNED-ALLOC
        keep.append(libc.memalign(4096, 100_057))            # MEMALIGN
        keep.append(libc.valloc(100_069))                    # VALLOC
        keep.append(libc.pvalloc(100_073))                   # PVALLOC
        for q in keep:
            libc.free(q)                                     # FREE-ALL
        m = libc.mmap(None, 5 * 4096, 3, 0x22, -1, 0)        # MMAP (PRIVATE|ANONYMOUS)
        libc.munmap(m + 4096, 4096)                          # MUNMAP-PART
        libc.munmap(m, 5 * 4096)                             # MUNMAP-REST
        with mmap.mmap(-1, 3 * 4096) as mm:                  # PY-MMAP
            mm[0] = 1

    every_entry_point()
    """


@needs_preload
def test_every_entry_point(tmp_path):
    p, cap, script = trace(tmp_path, ENTRY_POINTS)
    assert p.returncode == 0, p.stderr
    r = load(str(cap))
    at = {s["line"]: s for s in sites(r, script, "every_entry_point")}

    def site(marker):
        return at[line_of(script, marker)]

    expect = {"CALLOC": 300_009, "GROW-MALLOC": 100_019, "REALLOC": 200_003,
              "REALLOCARRAY": 7 * 50_021, "POSIX-MEMALIGN": 100_043,
              "ALIGNED-ALLOC": 100_096, "MEMALIGN": 100_057, "VALLOC": 100_069,
              "PVALLOC": 100_073}
    for marker, size in expect.items():
        s = site(marker)
        assert (marker, s["malloc_bytes"], s["malloc_count"]) == (marker, size, 1)
        assert s["live_count"] == 0, marker     # every block was freed
    assert site("MMAP")["mmap_bytes"] == 5 * 4096 and site("MMAP")["live_bytes"] == 0
    assert site("PY-MMAP")["mmap_bytes"] == 3 * 4096 and site("PY-MMAP")["live_bytes"] == 0
    kinds = {(b["size"], b["kind"]) for b in r["largest"]}
    assert (7 * 50_021, "realloc") in kinds and (300_009, "calloc") in kinds


FORK = """\
    import os, sys
    def parent_side():
        return bytearray(1_000_003)  # PARENT
    def child_side():
        return bytearray(3_000_017)  # CHILD
    keep = parent_side()
    pid = os.fork()
    if pid == 0:
        keep2 = child_side()
        os._exit(5)                  # no destructors: the tracer still writes its tail
    _, status = os.waitpid(pid, 0)
    print("child exit", os.waitstatus_to_exitcode(status))
    """


@needs_preload
def test_fork_child_writes_its_own_capture(tmp_path):
    p, cap, script = trace(tmp_path, FORK)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "child exit 5\n"
    children = list(tmp_path.glob("w.cap.*"))
    assert len(children) == 1, children
    parent = load(str(cap))
    child = load(str(children[0]))
    assert child["ppid"] == parent["pid"] and child["complete"]
    assert [s["malloc_bytes"] for s in sites(parent, script, "parent_side")] == [1_000_004]
    assert sites(parent, script, "child_side") == []        # never in the parent's capture
    assert [s["malloc_bytes"] for s in sites(child, script, "child_side")] == [3_000_018]
    assert sites(child, script, "parent_side") == []


EXEC = """\
    import os, sys
    def before():
        return bytearray(1_000_033)  # BEFORE
    keep = before()
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-c",
             "def after():\\n    return bytearray(2_000_039)\\nk = after()\\nprint('after exec')"])
    """


@needs_preload
def test_exec_keeps_behaviour_and_the_last_program_owns_the_capture(tmp_path):
    p, cap, script = trace(tmp_path, EXEC)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "after exec\n"
    last = load(str(cap))
    assert [(s["function"], s["malloc_bytes"]) for s in last["by_python_site"]
            if s["file"] == "<string>" and s["function"] == "after"] == [("after", 2_000_040)]
    aside = list(tmp_path.glob("w.cap.*"))
    assert len(aside) == 1
    first = load(str(aside[0]))
    assert first["pid"] == last["pid"] and first["ended_by_exec"]
    assert [s["malloc_bytes"] for s in sites(first, script, "before")] == [1_000_034]
    assert "other processes wrote 1 capture" in p.stderr


@needs_preload
def test_a_shell_that_runs_python_and_a_failed_exec(tmp_path):
    """A launcher script: the shell's capture is set aside, Python's is FILE."""
    script = tmp_path / "w.py"
    script.write_text(textwrap.dedent("""\
        import os
        try:
            os.execv("/nonexistent/program", ["x"])
        except OSError:
            pass
        def still_traced():
            return bytearray(1_500_007)
        k = still_traced()
        """))
    launcher = tmp_path / "run.sh"
    launcher.write_text(f"#!/bin/sh\nexec {PY} {script}\n")
    launcher.chmod(0o755)
    cap = tmp_path / "s.cap"
    p = cli("-o", str(cap), "--", str(launcher), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    r = load(str(cap))
    assert r["python_status"] == "on" and r["complete"] and not r["ended_by_exec"]
    assert [s["malloc_bytes"] for s in sites(r, script, "still_traced")] == [1_500_008]


@needs_preload
def test_native_callers(tmp_path):
    src = """\
    import ctypes
    libc = ctypes.CDLL(None)
    libc.strdup.restype = ctypes.c_void_p
    libc.strdup.argtypes = [ctypes.c_char_p]
    text = b"x" * 1_234_566   # above 3.9's 256 KiB arenas, which would crowd the top 10
    def dup():
        return [libc.strdup(text) for _ in range(3)]  # DUP
    dup()
    """
    p, cap, script = trace(tmp_path, src, "--native")
    assert p.returncode == 0, p.stderr
    r = load(str(cap))
    assert r["native"]
    dups = [b for b in r["largest"] if b["size"] == 1_234_567]
    assert len(dups) == 3
    for b in dups:
        assert (b["function"], b["line"]) == (in_comprehension("dup"), line_of(script, "DUP"))
        assert b["native"].startswith("libc.so.6!") and "strdup" in b["native"]
    text = cli("report", str(cap), "--view", "all", check=True).stdout
    assert "native callers by bytes" in text and "strdup" in text
    assert any("strdup" in n["symbol"] for n in r["by_native_site"])


@needs_preload
def test_python_malloc_makes_every_object_visible(tmp_path):
    src = """\
    def small_objects():
        return [(i, i) for i in range(10_000)]  # SMALL
    keep = small_objects()
    """
    p, cap, script = trace(tmp_path, src, "--python-malloc")
    assert p.returncode == 0, p.stderr
    r = load(str(cap))
    s = [x for x in sites(r, script, in_comprehension("small_objects")) if x["line"] == line_of(script, "SMALL")]
    # each 2-tuple is one malloc of its own (and each int above the small-int cache too)
    assert s[0]["malloc_count"] >= 10_000 and s[0]["mmap_count"] == 0
    p, cap2, script = trace(tmp_path, src, out="default.cap")
    r2 = load(str(cap2))
    s2 = [x for x in sites(r2, script, in_comprehension("small_objects")) if x["line"] == line_of(script, "SMALL")]
    # with pymalloc the tuples live in arenas: a handful of arena mmaps and list growth
    assert s2[0]["malloc_count"] < 100


@needs_preload
def test_tracer_that_cannot_write_leaves_the_program_alone(tmp_path):
    """Started by hand with a capture path that cannot be created."""
    env = dict(os.environ, LD_PRELOAD=str(LIBRARY),
               PYMEMTRACE_MALLOC_OUT=str(tmp_path / "missing" / "x.cap"))
    p = subprocess.run([PY, "-c", "import sys; print(sum(range(10))); sys.exit(3)"],
                       env=env, capture_output=True, text=True)
    assert (p.returncode, p.stdout) == (3, "45\n")
    assert "pymemtrace malloc: cannot create the capture" in p.stderr
    assert "No such file or directory" in p.stderr


@needs_preload
def test_killed_program_leaves_a_readable_capture(tmp_path):
    src = """\
    import os, signal
    def churn():
        keep = []
        for i in range(20_000):
            keep.append(bytearray(1000 + i % 7))  # CHURN
        return keep
    k = churn()
    os.kill(os.getpid(), signal.SIGKILL)
    """
    p, cap, script = trace(tmp_path, src)
    assert p.returncode == 128 + 9
    r = load(str(cap))
    assert not r["complete"]
    assert any("no end" in w and "killed" in w for w in r["warnings"])
    s = [x for x in sites(r, script, "churn") if x["line"] == line_of(script, "CHURN")]
    # every record is in the file the moment it is made (mapped chunks): none of
    # the 20,000 bytearrays is lost (the list's own reallocs come on top)
    assert 20_000 <= s[0]["malloc_count"] < 20_100
    rep = cli("report", str(cap))
    assert rep.returncode == 0 and "warning: the capture has no end" in rep.stdout


@needs_preload
def test_malloc_trace_block_in_process(tmp_path):
    src = """\
    from pymemtrace.malloc import Tracing, is_tracing, is_traced
    def outside():
        return bytearray(1_000_037)  # OUTSIDE
    def inside():
        return bytearray(2_000_029)  # INSIDE
    assert is_traced() and not is_tracing()
    a = outside()
    with Tracing():
        with Tracing():
            b = inside()
        assert is_tracing()
    assert not is_tracing()
    c = outside()
    print("ok")
    """
    p, cap, script = trace(tmp_path, src, "--paused")
    assert (p.returncode, p.stdout) == (0, "ok\n"), p.stderr
    r = load(str(cap))
    assert [s["malloc_bytes"] for s in sites(r, script, "inside")] == [2_000_030]
    assert sites(r, script, "outside") == []
    # freed at exit, after tracing ended: reported live (what the block kept)
    assert [s["bytes"] for s in r["leaks"] if s["function"] == "inside"] == [2_000_030]


def test_malloc_trace_without_the_tracer_is_a_clear_error():
    from pymemtrace.malloc import Tracing, is_traced
    if is_traced():
        pytest.skip("needs a process not started by 'pymemtrace malloc' (this one is)")
    with pytest.raises(RuntimeError, match="pymemtrace malloc --paused"):
        with Tracing():
            pass


@needs_preload
def test_threads_freeing_each_others_blocks_while_forking(tmp_path):
    """Producers allocate, consumers free, the main thread forks meanwhile:
    the capture orders every free after its allocation across threads."""
    src = """\
    import os, queue, threading
    q = queue.Queue(maxsize=256)
    N, P = 3000, 4
    def produce():
        for i in range(N):
            q.put(bytearray(600 + i % 300))  # PRODUCE
    def consume():
        while True:
            b = q.get()
            if b is None:
                return
            del b
    ps = [threading.Thread(target=produce) for _ in range(P)]
    cs = [threading.Thread(target=consume) for _ in range(P)]
    for t in ps + cs: t.start()
    for _ in range(5):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    for t in ps: t.join()
    for _ in cs: q.put(None)
    for t in cs: t.join()
    print("done")
    """
    p, cap, script = trace(tmp_path, src)
    assert (p.returncode, p.stdout) == (0, "done\n"), p.stderr
    r = load(str(cap))
    assert r["complete"] and r["seq_gaps"] == 0, r["warnings"]
    s = [x for x in sites(r, script, "produce") if x["line"] == line_of(script, "PRODUCE")]
    assert s[0]["malloc_count"] == 3000 * 4
    assert s[0]["malloc_bytes"] == 4 * sum(601 + i % 300 for i in range(3000))
    assert s[0]["live_count"] == 0      # every block freed, by another thread
    assert len(list(tmp_path.glob("w.cap.*"))) == 5


C_PROGRAM = r"""
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *early;

/* runs before main (and maybe before the tracer's own constructor) */
__attribute__((constructor)) static void early_alloc(void) { early = malloc(4321); }

__attribute__((noinline)) void *allocate_distinct(size_t n) { return malloc(n); }

static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        void *p = allocate_distinct(123457);
        memset(p, 1, 16);
        free(p);
    }
    return NULL;
}

int main(void)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    void *kept = allocate_distinct(77777);   /* a leak, by a C function */
    (void)kept;
    pid_t pid = fork();
    if (pid == 0) { free(allocate_distinct(99991)); _exit(0); }
    int st;
    waitpid(pid, &st, 0);
    free(early);
    return 42;
}
"""


@needs_preload
def test_a_c_program_threads_and_native_symbols(tmp_path):
    import shutil
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    src = tmp_path / "prog.c"
    src.write_text(C_PROGRAM)
    exe = tmp_path / "prog"
    subprocess.run([cc, "-O1", "-o", str(exe), str(src), "-lpthread"], check=True)
    cap = tmp_path / "c.cap"
    p = cli("-o", str(cap), "--native", "--", str(exe))
    assert p.returncode == 42, p.stderr
    r = load(str(cap))
    assert r["python_status"] == "none" and r["complete"]
    nat = {n["symbol"].split("+")[0]: n for n in r["by_native_site"] if n["symbol"]}
    d = nat["allocate_distinct"]
    assert d["module"] == str(exe)
    assert d["malloc_count"] == 4 * 1000 + 1
    assert d["malloc_bytes"] == 4 * 1000 * 123457 + 77777
    assert (d["live_bytes"], d["live_count"]) == (77777, 1)
    leaks = [n for n in r["native_leaks"] if n["symbol"].startswith("allocate_distinct")]
    assert leaks and leaks[0]["bytes"] == 77777
    child = list(tmp_path.glob("c.cap.*"))
    assert len(child) == 1
    rc = load(str(child[0]))
    assert any(b["size"] == 99991 and b["freed"] for b in rc["largest"])



@needs_preload
def test_a_forked_child_that_execs_leaves_the_parents_capture_in_place(tmp_path):
    """fork then exec without vfork (CPython 3.9's subprocess): the child's exec
    must not move the parent's FILE aside, nor leave an empty capture of its own."""
    import glob
    py39 = sorted(glob.glob("/root/.pyenv/versions/3.9.*/bin/python3.9"))
    if not py39:
        pytest.skip("needs CPython 3.9 (its subprocess forks without vfork)")
    cap = tmp_path / "w.cap"
    src = "import os, subprocess, sys; subprocess.run([sys.executable, '-c', 'pass']); print(os.getpid())"
    p = cli("-o", str(cap), "--", py39[-1], "-c", src, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    parent = load(str(cap))
    assert parent["pid"] == int(p.stdout) and parent["complete"]
    children = list(tmp_path.glob("w.cap.*"))
    assert len(children) == 1, children       # the exec'd Python's, nothing from before exec
    assert load(str(children[0]))["ppid"] == parent["pid"]
