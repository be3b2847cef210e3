"""What pymemtrace malloc records: every allocator entry point (malloc to munmap) at
its line, native callers with --native, every object with --python-malloc, and only
what a Tracing() block allocates with --paused."""
import pytest

from pymemtrace.readers.malloc_capture import load
from malloc_e2e import needs_preload, cli, trace, line_of, in_comprehension, sites


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
