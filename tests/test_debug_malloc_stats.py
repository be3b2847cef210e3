"""debug_malloc_stats: exact snapshots of the small-object allocator, fd 2 untouched."""
import contextlib
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

from pymemtrace import debug_malloc_stats as dms

HERE = pathlib.Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
FIXTURES = HERE / "fixtures" / "mallocstats"
ROW = re.compile(r"^ {0,4}\d+ +\d+ +[+-]\d+ +[+-]\d+ +[+-]\d+$")


def size_class(nbytes):
    """pymalloc's size class index of a request of nbytes (16-byte alignment)."""
    return (nbytes - 1) // 16


def keep_complex(n):
    """A block that keeps n complex numbers (32 bytes, no free list) in a
    preallocated list, looping over small (cached) ints only."""
    assert n <= 256
    lst = [None] * n
    c = 1j
    d = dms.DiffSysDebugMallocStats()
    with d:
        for i in range(n):
            lst[i] = c * i
    return d, lst


def _run(code, **env_extra):
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=120)


# ---- the snapshot itself ---------------------------------------------------------------------

def test_snapshot_parses_this_interpreter():
    s = dms.SysDebugMallocStats()
    assert s.taken and s.pymalloc and not s.mimalloc
    assert s.unparsed_lines == 0
    assert s.small_block_threshold == 512 and s.num_size_classes == 32
    classes = s.size_classes
    assert len(classes) >= 10
    assert all(c.size == (c.index + 1) * 16 for c in classes)
    # The writer's own accounting agrees with the table we parsed.
    assert s.bytes_in_allocated_blocks == sum(c.blocks_in_use * c.size for c in classes)
    assert s.bytes_in_available_blocks == sum(c.avail_blocks * c.size for c in classes)
    if sys.version_info >= (3, 10):
        assert s.arena_size == 1024 * 1024 and s.pool_size == 16 * 1024
    else:   # before 3.10: 256 KiB arenas of 4 KiB pools
        assert s.arena_size == 256 * 1024 and s.pool_size == 4 * 1024
    assert s.total == s.arenas_allocated_current * s.arena_size
    assert s.total == (s.bytes_in_allocated_blocks + s.bytes_in_available_blocks
                       + s.unused_pools * s.pool_size + s.bytes_lost_to_pool_headers
                       + s.bytes_lost_to_quantization + s.bytes_lost_to_arena_alignment)
    assert s.arenas_reclaimed == s.arenas_allocated_total - s.arenas_allocated_current
    assert s.arenas_highwater_mark >= s.arenas_allocated_current
    names = [f.name for f in s.free_lists]
    # tuple free lists: sizes 1-19 before 3.11, 1-20 since
    assert "free PyFloatObjects" in names and "free 19-sized PyTupleObjects" in names
    assert s.free_list("free PyDictObjects").size_each == 48
    if sys.version_info >= (3, 10):   # the arena map (radix tree) came with 3.10
        assert s.value("# arena map mid nodes", "arena_map_counts") >= 1
    assert "size classes" in repr(s)


def test_get_debugmallocstats_is_what_sys_writes_and_leaves_fd2_alone():
    out = _run("""
        import sys
        from pymemtrace import debug_malloc_stats
        text = debug_malloc_stats.get_debugmallocstats()
        assert isinstance(text, bytes)
        sys.stdout.write(text.decode("ascii"))
        sys.stdout.flush()
        sys._debugmallocstats()
    """)
    assert out.returncode == 0, out.stderr
    ours, theirs = dms.SysDebugMallocStats(out.stdout), dms.SysDebugMallocStats(out.stderr)
    # stderr got only sys._debugmallocstats()'s own text: same layout, parsed the same way.
    assert out.stderr.startswith("Small block threshold = 512")
    assert out.stderr.count("Small block threshold") == 1
    assert ours.unparsed_lines == theirs.unparsed_lines == 0
    assert [(v.section, v.label) for v in ours.values if v.count is None] == \
        [(v.section, v.label) for v in theirs.values if v.count is None]
    assert [f.name for f in ours.free_lists] == [f.name for f in theirs.free_lists]
    assert ours.text.count("\n") >= 70


def test_snapshot_text_round_trips():
    s = dms.SysDebugMallocStats()
    t = dms.SysDebugMallocStats(s.text)
    assert t.size_classes == s.size_classes
    assert t.values == s.values and t.free_lists == s.free_lists
    assert t.diff(s) == "No change.\n"


# ---- accuracy: the machinery never shows in the diff -------------------------------------------

def test_empty_block_diffs_to_no_change():
    for _ in range(20):
        d = dms.DiffSysDebugMallocStats()
        with d:
            pass
        assert d.size_class_deltas() == {}
        assert d.diff() == "No change.\n"


@pytest.mark.parametrize("n", [1, 37, 200])
def test_n_objects_of_one_class_are_exactly_n_blocks(n):
    d, lst = keep_complex(n)
    deltas = d.size_class_deltas()
    cls = size_class(sys.getsizeof(lst[0]))
    assert list(deltas) == [cls], deltas          # no other class changed at all
    assert deltas[cls].blocks_in_use == n
    assert deltas[cls].blocks_in_use + deltas[cls].avail_blocks == \
        deltas[cls].num_pools * ((16384 - 48) // deltas[cls].size)
    text = d.diff()
    assert re.search(rf"^ {{0,4}}{cls} +{(cls + 1) * 16} +[+-]\d+ +\+{n} +[+-]\d+$", text, re.M), text
    assert f"# bytes in allocated blocks        ={'+' + format(32 * n, ',d'):>21}" in text


def test_seed_strings_are_exactly_their_classes():
    """The seed's example: each string and the list's item array, and nothing else."""
    list_of_strings = []
    with dms.DiffSysDebugMallocStats() as malloc_diff:
        for i in range(1, 9):
            list_of_strings.append(' ' * (i * 8))
    expected = {}
    for s in list_of_strings:
        expected[size_class(sys.getsizeof(s))] = expected.get(size_class(sys.getsizeof(s)), 0) + 1
    items = sys.getsizeof(list_of_strings) - sys.getsizeof([])
    expected[size_class(items)] = expected.get(size_class(items), 0) + 1
    got = {i: c.blocks_in_use for i, c in malloc_diff.size_class_deltas().items()}
    assert got == expected


def test_accuracy_after_and_while_tracemalloc():
    assert not tracemalloc.is_tracing()
    tracemalloc.start()
    try:
        junk = [str(i) * 3 for i in range(2000)]
        tracemalloc.take_snapshot()
        # While tracing: sys._debugmallocstats() itself prints no pymalloc
        # section then; ours still does, and is still exact.
        assert dms.allocator() == "pymalloc"
        d, _ = keep_complex(100)
        assert {i: c.blocks_in_use for i, c in d.size_class_deltas().items()} == {1: 100}
        d = dms.DiffSysDebugMallocStats()
        with d:
            pass
        assert d.diff() == "No change.\n"
        del junk
    finally:
        tracemalloc.stop()
    d, _ = keep_complex(100)
    assert {i: c.blocks_in_use for i, c in d.size_class_deltas().items()} == {1: 100}
    d = dms.DiffSysDebugMallocStats()
    with d:
        pass
    assert d.diff() == "No change.\n"


def test_free_list_changes_are_reported():
    x = 1.25
    drain = [x * i for i in range(150)]       # empties the float free list (at most 100)
    holder = [x * 3, x * 5, x * 7]            # three floats from pymalloc
    d = dms.DiffSysDebugMallocStats()
    with d:
        holder[0] = holder[1] = holder[2] = None   # freed onto the free list, not to pymalloc
    assert d.before.free_list("free PyFloatObjects").count == 0
    assert d.after.free_list("free PyFloatObjects").count == 3
    assert d.size_class_deltas() == {}
    assert d.diff() == (" " * 10 + "+3 free PyFloatObjects * 24 bytes each ="
                        + "+72".rjust(21) + "\n")
    del drain


def test_exception_in_block_finishes_and_propagates():
    lst = [None] * 10
    c = 2j
    d = dms.DiffSysDebugMallocStats()
    with pytest.raises(KeyError, match="boom"):
        with d:
            for i in range(10):
                lst[i] = c * i
            raise KeyError("boom")
    assert d.finished and not d.active
    assert d.size_class_deltas()[1].blocks_in_use == 10


def test_contextlib_exit_stack_uses_the_unbound_slots():
    with contextlib.ExitStack() as stack:
        d = stack.enter_context(dms.DiffSysDebugMallocStats())
        assert d.active
    assert d.finished
    assert isinstance(d.diff(), str)
    # and the unbound forms check their argument
    with pytest.raises(TypeError, match="DiffSysDebugMallocStats"):
        type(d).__enter__(object())


def test_reuse_after_finish():
    d = dms.DiffSysDebugMallocStats()
    with d:
        pass
    with d:
        pass
    assert d.diff() == "No change.\n"


def test_diff_objects_are_collected():
    import gc
    for _ in range(50):
        with dms.DiffSysDebugMallocStats() as d:
            pass
        d.diff()
    del d
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, dms.DiffSysDebugMallocStats)]


# ---- bad use -----------------------------------------------------------------------------------

def test_diff_before_the_block_ended_is_an_error():
    d = dms.DiffSysDebugMallocStats()
    with pytest.raises(RuntimeError, match=r"DiffSysDebugMallocStats.diff\(\) called before the with block started"):
        d.diff()
    with d:
        with pytest.raises(RuntimeError, match=r"before the with block ended"):
            d.diff()
        with pytest.raises(RuntimeError, match="before the with block ended"):
            d.size_class_deltas()
        with pytest.raises(RuntimeError, match="already active"):
            with d:
                pass
    assert d.diff()


def test_exit_without_enter_is_an_error():
    d = dms.DiffSysDebugMallocStats()
    with pytest.raises(RuntimeError, match="without __enter__"):
        d.__exit__(None, None, None)
    with pytest.raises(TypeError, match="3 arguments"):
        d.__exit__(None)
    with pytest.raises(TypeError, match="no arguments"):
        d.__enter__(1)


def test_bad_snapshot_arguments():
    with pytest.raises(TypeError, match="text must be str or bytes"):
        dms.SysDebugMallocStats(42)
    with pytest.raises(ValueError, match="ASCII"):
        dms.SysDebugMallocStats("Small block threshold \xe9".encode("latin-1"))
    empty = dms.SysDebugMallocStats(take=False)
    assert not empty.taken and "not taken" in repr(empty)
    with pytest.raises(RuntimeError, match="take"):
        empty.text
    with pytest.raises(TypeError, match="before must be a SysDebugMallocStats"):
        dms.SysDebugMallocStats().diff("text")
    with pytest.raises(TypeError):
        dms.SysDebugMallocStats(take=True, spam=1)
    empty.take()
    assert empty.pymalloc


def test_text_that_is_not_statistics_is_refused():
    """Issue 15: empty or foreign text was accepted as a snapshot "<no pymalloc>"."""
    with pytest.raises(ValueError, match=r"^text is empty text: sys._debugmallocstats\(\) writes"):
        dms.SysDebugMallocStats("")
    with pytest.raises(ValueError, match="only blank lines"):
        dms.SysDebugMallocStats("\n   \n")
    with pytest.raises(ValueError, match=r'not the text sys._debugmallocstats\(\) writes .* '
                                         r'it starts "not"'):
        dms.SysDebugMallocStats("not\nmalloc stats\n")
    with pytest.raises(ValueError, match='it starts "total = 3"'):
        dms.SysDebugMallocStats(b"total = 3\n")
    # real statistics still parse: pymalloc now, and the other layouts
    good = dms.SysDebugMallocStats()
    assert dms.SysDebugMallocStats(good.text).pymalloc
    for name in ("cpython-3.11-malloc.txt", "cpython-3.13t-mimalloc.txt"):
        s = dms.SysDebugMallocStats((FIXTURES / name).read_text())
        assert s.free_lists and not s.pymalloc


def test_without_pymalloc_gives_a_clear_message():
    out = _run("""
        from pymemtrace import debug_malloc_stats as dms
        print(dms.allocator())
        s = dms.SysDebugMallocStats()
        import os, sys, tempfile
        with tempfile.TemporaryFile() as t:     # the interpreter's own free-list lines
            saved = os.dup(2); os.dup2(t.fileno(), 2)
            try:
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2); os.close(saved)
            t.seek(0)
            own = sum(1 for ln in t.read().splitlines() if b" free " in ln and b"bytes each" in ln)
        print(s.pymalloc, len(s.size_classes), len(s.free_lists), own)
        try:
            dms.DiffSysDebugMallocStats()
        except dms.PymallocUnavailableError as err:
            print("ERROR", err)
    """, PYTHONMALLOC="malloc")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "none"
    pymalloc, classes, free_lists, own = lines[1].split()
    assert (pymalloc, classes) == ("False", "0")
    assert int(free_lists) == int(own) >= 20      # 23 free lists on 3.9-3.12, 24 on 3.13
    assert lines[2].startswith("ERROR debug_malloc_stats: this interpreter does not use pymalloc")
    assert "PYTHONMALLOC" in lines[2]


def test_tracemalloc_started_before_first_use():
    out = _run("""
        import tracemalloc
        d = keep = i = None   # bind the globals first: a new global made by `as d` may resize the dict
        tracemalloc.start()
        from pymemtrace import debug_malloc_stats as dms
        try:
            dms.DiffSysDebugMallocStats()
        except dms.PymallocUnavailableError as err:
            print("ERROR", err)
        tracemalloc.stop()
        with dms.DiffSysDebugMallocStats() as d:
            pass
        print(d.diff().strip())
        tracemalloc.start()          # now pymalloc is known: works while tracing
        keep = [None] * 50
        with dms.DiffSysDebugMallocStats() as d:
            for i in range(50):
                keep[i] = 1j * i
        print({i: c.blocks_in_use for i, c in d.size_class_deltas().items()})
        tracemalloc.stop()
    """)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("ERROR debug_malloc_stats: tracemalloc is tracing")
    assert lines[1:] == ["No change.", "{1: 50}"]


# ---- other CPython versions' texts ---------------------------------------------------------------

@pytest.mark.parametrize("name,pool,arena,tuples,arena_map", [
    ("cpython-3.8.txt", 4096, 262144, 19, False),
    ("cpython-3.8-pydebug.txt", 4096, 262144, 19, False),
    ("cpython-3.9.txt", 4096, 262144, 19, False),
    ("cpython-3.10.txt", 16384, 1048576, 19, True),
    ("cpython-3.11.txt", 16384, 1048576, 20, True),
    ("cpython-3.12.txt", 16384, 1048576, 20, True),
    ("cpython-3.13.txt", 16384, 1048576, 20, True),
    ("seed-example.txt", 16384, 1048576, 20, True),
])
def test_fixture_texts_of_other_versions(name, pool, arena, tuples, arena_map):
    s = dms.SysDebugMallocStats((FIXTURES / name).read_text())
    assert s.pymalloc and s.unparsed_lines == 0
    assert s.pool_size == pool and s.arena_size == arena
    assert s.bytes_in_allocated_blocks == sum(c.blocks_in_use * c.size for c in s.size_classes)
    assert s.total == s.arenas_allocated_current * arena
    assert sum("-sized PyTupleObjects" in f.name for f in s.free_lists) == tuples
    assert all(f.total == f.count * f.size_each for f in s.free_lists)
    assert (s.value("# arena map bot nodes") is not None) == arena_map
    if "pydebug" in name:
        assert s.value("# times object malloc called", "other") > 0


def test_fixture_mimalloc_313t():
    s = dms.SysDebugMallocStats((FIXTURES / "cpython-3.13t-mimalloc.txt").read_text())
    assert s.mimalloc and not s.pymalloc and s.unparsed_lines == 0
    assert s.size_classes == [] and s.total is None
    assert s.value("Allocated Blocks", "mimalloc") > 0
    assert len(s.free_lists) == 23
    assert "mimalloc" in repr(s)


def test_fixture_diff_between_versions_is_well_formed():
    a = dms.SysDebugMallocStats((FIXTURES / "cpython-3.12.txt").read_text())
    b = dms.SysDebugMallocStats((FIXTURES / "cpython-3.13.txt").read_text())
    text = b.diff(a)
    assert text.startswith("class   size   num pools   blocks in use  avail blocks\n")
    table = text.split("\n\n")[0].splitlines()[2:]
    rows = [l for l in table if ROW.match(l)]
    assert rows and rows == table
    deltas = b.size_class_deltas(a)
    assert len(rows) == len(deltas)
    assert a.diff(a) == "No change.\n"


# ---- the seed's example ----------------------------------------------------------------------------

def test_seed_example_runs_verbatim():
    out = subprocess.run([sys.executable, str(EXAMPLES / "ex_debug_malloc_stats.py")],
                         capture_output=True, text=True, check=True, timeout=120)
    assert out.stderr == ""
    lines = out.stdout.splitlines()
    assert lines[:4] == ["example_debug_malloc_stats_for_documentation()",
                         "DiffSysDebugMallocStats.diff():",
                         "class   size   num pools   blocks in use  avail blocks",
                         "-----   ----   ---------   -------------  ------------"]
    rows = []
    for line in lines[4:]:
        if not line:
            break
        assert ROW.match(line), line
        rows.append(line)
    # 8 strings and the list's array: 9 blocks in at most 5 classes.
    assert sum(int(r.split()[3]) for r in rows) == 9
    assert re.search(r"^# bytes in allocated blocks        = +\+[\d,]+$", out.stdout, re.M)
