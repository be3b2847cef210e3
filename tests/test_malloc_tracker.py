"""pymemtrace.malloc.Tracker: one block of a running program traced in-process (issue 14).

Each test runs a small program in a child interpreter (the one running the
suite: `make test-versions` covers 3.9 to 3.13 and Debian's static 3.11): the
Tracker rewrites relocation slots process-wide, which pytest's own process
should not see.  The captures are read back by the reports of issue 12.
"""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import malloc_capture
from malloc_e2e import line_of, skip_under_asan
from pymemtrace.readers.malloc_capture import capture_header, load
from pymemtrace.readers.malloc_stacks import load_stacks

pytestmark = skip_under_asan("ASan replaces malloc: the Tracker refuses another allocator")

FLAG_PACKED = 4
STATE_EXIT = 1


def run(tmp_path, src, *args, check=True):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(src))
    p = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                       cwd=str(tmp_path), timeout=120)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


def flags_of(cap):
    with open(cap, "rb") as f:
        return malloc_capture.HEADER.unpack(f.read(malloc_capture.HEADER.size))[4]


def functions(cap):
    """function name -> bytes allocated in it (inclusive), from the by-stack reader."""
    out = {}
    for f in load_stacks(str(cap))["functions"]:
        out[f["function"]] = out.get(f["function"], 0) + f["allocated_bytes"]
    return out


BLOCK = """\
    import sys
    from pymemtrace.malloc import Tracker

    def before():
        return [bytearray(1_000_003) for _ in range(3)]

    def leaf():
        return bytearray(2_000_003)  # LEAF

    def work():
        return [leaf() for _ in range(4)]

    def after():
        return [bytearray(1_000_007) for _ in range(3)]

    early = before()
    with Tracker(sys.argv[1]) as t:
        kept = work()
        del early           # freed in the block, made before it: not an event of the block
    late = after()
    print(t.path, t.restored, t.left)
    """


def test_block_is_recorded_with_whole_stacks_and_packed(tmp_path):
    cap = tmp_path / "block.cap"
    p = run(tmp_path, BLOCK, str(cap))
    path, restored, left = p.stdout.split()
    assert path == str(cap)
    assert int(restored) > 0 and int(left) == 0     # every slot put back
    h = capture_header(str(cap))
    assert h["state"] == STATE_EXIT and flags_of(cap) & FLAG_PACKED
    funcs = functions(cap)
    assert funcs.get("leaf", 0) >= 4 * 2_000_003
    assert funcs.get("work", 0) >= 4 * 2_000_003    # whole stacks: the callers are charged
    assert "before" not in funcs and "after" not in funcs
    r = load(str(cap))
    assert r["complete"]
    sizes = [b["size"] for b in r["largest"]]
    assert 1_000_003 not in sizes and 1_000_007 not in sizes
    # the line of the allocation, from the innermost frame
    script = tmp_path / "app.py"
    rows = [s for s in r["by_python_site"] if s["function"] == "leaf"]
    assert rows and rows[0]["line"] == line_of(script, "LEAF")
    # every report of the capture reads it
    for argv in (["report", str(cap), "--json"],
                 ["flamegraph", str(cap), "-o", str(tmp_path / "f.html")],
                 ["export", str(cap), "--format", "collapsed", "-o", str(tmp_path / "c.txt")]):
        q = subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", *argv],
                           capture_output=True, text=True)
        assert q.returncode == 0, (argv, q.stderr)
    assert "leaf" in (tmp_path / "c.txt").read_text()


def test_python_allocator_and_extension_imported_in_the_block_are_seen(tmp_path):
    """pymalloc's arenas (mmap) and PyMem_Raw* go through the interpreter's own
    relocation slots; an extension loaded inside the block is patched too."""
    cap = tmp_path / "py.cap"
    run(tmp_path, """\
        import sys
        from pymemtrace.malloc import Tracker

        def small_objects():
            return [(i, i) for i in range(200_000)]

        with Tracker(sys.argv[1]):
            keep = small_objects()
            import _decimal             # a C extension loaded here: dlopen is patched
            d = _decimal.Decimal(7) ** 20000
        """, str(cap))
    r = load(str(cap))
    assert r["mmap_count"] >= 1          # pymalloc arenas
    funcs = functions(cap)
    assert funcs.get("small_objects", 0) >= 200_000 * 56
    # libmpdec's allocations inside _decimal come through _decimal's (or libmpdec's) slots
    assert funcs.get("<module>", 0) > funcs.get("small_objects", 0)


LIB_C = """\
#include <stdlib.h>
#include <string.h>
void *grab(size_t n) { void *p = malloc(n); if (p) memset(p, 1, n); return p; }
void drop(void *p) { free(p); }
"""


def build_lib(tmp_path, name):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the test library")
    (tmp_path / "lib.c").write_text(LIB_C)
    so = tmp_path / name
    # lazy binding (no -z now): the slots hold the PLT stubs until first called
    subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", str(so), str(tmp_path / "lib.c")],
                   check=True, capture_output=True)
    return so


def test_libraries_loaded_before_and_inside_the_block_are_seen(tmp_path):
    """A library loaded before the block is patched at the start; one loaded
    by dlopen inside the block (ctypes here, an import likewise) as it loads;
    after the block neither is traced and both run as before."""
    before, inside = build_lib(tmp_path, "before.so"), build_lib(tmp_path, "inside.so")
    cap = tmp_path / "lib.cap"
    run(tmp_path, """\
        import ctypes, sys
        from pymemtrace.malloc import Tracker

        def load(path):
            lib = ctypes.CDLL(path)
            lib.grab.restype = ctypes.c_void_p
            lib.grab.argtypes = [ctypes.c_size_t]
            lib.drop.argtypes = [ctypes.c_void_p]
            return lib

        a = load(sys.argv[2])
        with Tracker(sys.argv[1]):
            pa = a.grab(5_555_501)
            b = load(sys.argv[3])
            pb = b.grab(6_666_601)
            b.drop(pb)
        a.drop(pa)
        q = b.grab(7_777_701)
        b.drop(q)
        """, str(cap), str(before), str(inside))
    r = load(str(cap))
    sizes = {b["size"]: b["freed"] for b in r["largest"]}
    assert sizes.get(5_555_501) is False        # made in the block, freed after it: live
    assert sizes.get(6_666_601) is True         # the library dlopen'd in the block: patched
    assert 7_777_701 not in sizes               # after the block: untraced


def test_native_stacks(tmp_path):
    cap = tmp_path / "nat.cap"
    run(tmp_path, """\
        import sys
        from pymemtrace.malloc import Tracker

        def leaf():
            return bytearray(3_000_001)

        with Tracker(sys.argv[1], native=True) as t:
            keep = leaf()
        assert t.native
        """, str(cap))
    h = capture_header(str(cap))
    assert flags_of(cap) & 1                   # native
    q = subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", "report", "--native",
                        str(cap), "--json"], capture_output=True, text=True)
    assert q.returncode == 0, q.stderr
    assert "leaf" in q.stdout


THREADS = """\
    import sys, threading
    from pymemtrace.malloc import Tracker

    go = threading.Event()
    done = threading.Event()

    def early_thread():             # started before the block
        go.wait()
        keep.append(bytearray(5_000_011))
        done.set()

    def late_thread():              # started inside the block
        keep.append(bytearray(6_000_011))

    keep = []
    a = threading.Thread(target=early_thread, name="early")
    a.start()
    with Tracker(sys.argv[1]):
        go.set()
        done.wait()
        b = threading.Thread(target=late_thread, name="late")
        b.start()
        b.join()
    a.join()
    """


def test_threads_started_before_and_during_the_block_are_traced(tmp_path):
    cap = tmp_path / "thr.cap"
    run(tmp_path, THREADS, str(cap))
    funcs = functions(cap)
    assert funcs.get("early_thread", 0) >= 5_000_011
    assert funcs.get("late_thread", 0) >= 6_000_011
    threads = load_stacks(str(cap))["threads"]
    assert len({t["id"] for t in threads}) >= 3


def test_a_tracker_started_in_a_thread_traces_the_whole_process(tmp_path):
    """Decided: a Tracker works from any thread, and traces every thread."""
    cap = tmp_path / "t.cap"
    run(tmp_path, """\
        import sys, threading
        from pymemtrace.malloc import Tracker

        started, stop = threading.Event(), threading.Event()

        def tracker():
            with Tracker(sys.argv[1]):
                started.set()
                stop.wait()

        def main_work():
            return bytearray(4_000_037)

        t = threading.Thread(target=tracker)
        t.start()
        started.wait()
        keep = main_work()
        stop.set()
        t.join()
        """, str(cap))
    assert functions(cap).get("main_work", 0) >= 4_000_037


def test_a_second_tracker_is_refused_and_writes_nothing(tmp_path):
    first, second = tmp_path / "one.cap", tmp_path / "two.cap"
    p = run(tmp_path, """\
        import sys
        from pymemtrace.malloc import Tracker

        def inside():
            return bytearray(2_500_009)

        with Tracker(sys.argv[1]):
            try:
                with Tracker(sys.argv[2]):
                    x = bytearray(9_999_991)
            except RuntimeError as e:
                print("refused:", e)
            keep = inside()
        # and a new one after the first ended works (unpacked, as asked)
        with Tracker(sys.argv[2], pack=False):
            y = bytearray(1_234_567)
        """, str(first), str(second))
    assert "refused: pymemtrace.malloc.Tracker: already tracking into " + str(first) in p.stdout
    funcs = functions(first)
    assert funcs.get("inside", 0) >= 2_500_009
    r1 = load(str(first))
    assert r1["complete"]
    # the refused block's allocation happened in the first's block: it is there, once
    r2 = load(str(second))
    assert r2["complete"] and r2["malloc_bytes"] >= 1_234_567
    assert flags_of(first) & FLAG_PACKED and not flags_of(second) & FLAG_PACKED
    assert r2["malloc_bytes"] < 9_999_991


def test_tracker_under_pymemtrace_malloc_points_at_tracing(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent("""\
        from pymemtrace.malloc import Tracker
        try:
            with Tracker("inner.cap"):
                pass
        except RuntimeError as e:
            print("refused:", e)
        """))
    p = subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", "-o",
                        str(tmp_path / "outer.cap"), "--", sys.executable, str(script)],
                       capture_output=True, text=True, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "refused:" in p.stdout and "Tracing()" in p.stdout
    assert not (tmp_path / "inner.cap").exists()


def test_existing_or_unwritable_path_is_refused_before_anything_is_patched(tmp_path):
    (tmp_path / "there.cap").write_bytes(b"keep me")
    p = run(tmp_path, """\
        import sys
        from pymemtrace.malloc import Tracker, _library

        for path, exc in ((sys.argv[1], FileExistsError), (sys.argv[2], FileNotFoundError)):
            try:
                with Tracker(path):
                    print("entered", path)
            except exc as e:
                print("refused:", e)
        # nothing was left patched: a new Tracker works
        with Tracker("ok.cap"):
            pass
        """, str(tmp_path / "there.cap"), str(tmp_path / "nodir" / "x.cap"))
    assert "entered" not in p.stdout
    assert p.stdout.count("refused:") == 2
    assert "there.cap" in p.stdout and "x.cap" in p.stdout
    assert (tmp_path / "there.cap").read_bytes() == b"keep me"
    assert load(str(tmp_path / "ok.cap"))["complete"]


def test_fork_inside_a_tracker_child_traces_nothing(tmp_path):
    cap = tmp_path / "fork.cap"
    p = run(tmp_path, """\
        import os, sys
        from pymemtrace.malloc import Tracker

        def parent_work():
            return bytearray(3_300_001)

        def child_work():
            return [bytearray(7_700_001) for _ in range(3)]

        with Tracker(sys.argv[1]) as t:
            pid = os.fork()
            if pid == 0:
                keep = child_work()
                # the child also leaves the block: it writes nothing
            else:
                keep = parent_work()
                _, status = os.waitpid(pid, 0)
                assert os.WEXITSTATUS(status) == 0, status
        if pid == 0:
            # a Tracker of the child's own works
            with Tracker(sys.argv[1] + ".child"):
                c = bytearray(1_100_001)
            os._exit(0)
        print("parent done")
        """, str(cap))
    assert "parent done" in p.stdout
    funcs = functions(cap)
    assert funcs.get("parent_work", 0) >= 3_300_001
    assert "child_work" not in funcs
    r = load(str(cap))
    assert r["complete"]
    assert r["malloc_bytes"] < 7_700_001
    child = load(str(cap) + ".child")
    assert child["complete"] and child["malloc_bytes"] >= 1_100_001
    # no capture of the child's but the one its own Tracker wrote
    assert sorted(f for f in os.listdir(tmp_path) if f.startswith("fork.cap")) == \
        ["fork.cap", "fork.cap.child"]


def test_subprocess_inside_a_tracker(tmp_path):
    """fork + exec (or vfork + exec) in the block: the child runs untraced and
    untouched, the parent's capture is complete and has none of it."""
    cap = tmp_path / "sub.cap"
    run(tmp_path, """\
        import subprocess, sys
        from pymemtrace.malloc import Tracker

        def parent_work():
            return bytearray(2_200_001)

        with Tracker(sys.argv[1]):
            p = subprocess.run([sys.executable, "-c", "x = bytearray(9_900_001); print(len(x))"],
                               capture_output=True, text=True)
            assert p.returncode == 0 and p.stdout.strip() == "9900001", p
            keep = parent_work()
        """, str(cap))
    r = load(str(cap))
    assert r["complete"] and not r["ended_by_exec"]
    assert functions(cap).get("parent_work", 0) >= 2_200_001
    assert max(b["size"] for b in r["largest"]) < 9_900_001
    assert sorted(os.listdir(tmp_path)) == ["app.py", "sub.cap"]


@pytest.mark.parametrize("how", ["sys.exit", "end", "os._exit", "thread"])
def test_interpreter_exit_inside_a_tracker_leaves_a_complete_capture(tmp_path, how):
    cap = tmp_path / "exit.cap"
    ending = {
        "sys.exit": "t.__enter__(); keep = work(); sys.exit(0)",
        "end": "t.__enter__(); keep = work()",
        "os._exit": "t.__enter__(); keep = work(); sys.stdout.flush(); os._exit(0)",
        "thread": ("import threading; ev, entered = threading.Event(), threading.Event()\n"
                   "def body():\n"
                   "    with t:\n"
                   "        entered.set()\n"
                   "        ev.wait()\n"
                   "th = threading.Thread(target=body, daemon=True); th.start()\n"
                   "entered.wait()\n"
                   "keep = work()"),
    }[how]
    head = textwrap.dedent("""\
        import os, sys
        from pymemtrace.malloc import Tracker

        def work():
            return bytearray(4_400_009)

        t = Tracker(sys.argv[1])
        """)
    run(tmp_path, head + ending + "\n", str(cap))
    h = capture_header(str(cap))
    assert h["state"] == STATE_EXIT
    r = load(str(cap))
    assert r["complete"]
    assert functions(cap).get("work", 0) >= 4_400_009
    if how != "os._exit":
        assert flags_of(cap) & FLAG_PACKED     # packed at exit like the CLI does


def test_bad_arguments(tmp_path):
    p = run(tmp_path, """\
        from pymemtrace.malloc import Tracker
        for bad in (None, 3):
            try:
                Tracker(bad)
            except TypeError as e:
                print("TypeError")
        """)
    assert p.stdout.split() == ["TypeError", "TypeError"]
