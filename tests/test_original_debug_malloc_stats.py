"""debug_malloc_stats: the original pymemtrace's object API over our C parser."""
import pathlib

import pytest

from pymemtrace import debug_malloc_stats as dms

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "mallocstats"


def _fixture(name_part):
    paths = sorted(p for p in FIXTURES.iterdir() if name_part in p.name)
    assert paths, f"no fixture with {name_part!r} in {FIXTURES}"
    return paths[0].read_bytes()


def test_get_debugmallocstats_returns_bytes_that_parse():
    raw = dms.get_debugmallocstats()
    assert isinstance(raw, bytes) and raw.startswith(b"Small block threshold")
    s = dms.SysDebugMallocStats(raw)
    assert s.pymalloc and s.unparsed_lines == 0
    assert repr(s) == raw.decode("ascii")


def test_empty_bytes_takes_a_snapshot_now():
    s = dms.SysDebugMallocStats(b"")
    assert s.taken and s.pymalloc and len(s.malloc_stats) >= 10


def test_size_class_rows_and_their_accessors():
    s = dms.SysDebugMallocStats()
    rows = s.malloc_stats
    assert all(isinstance(r, dms.DebugMallocStat) for r in rows)
    assert [r.block_class for r in rows] == [c.index for c in s.size_classes]
    assert sum(r.allocated_bytes for r in rows) == s.bytes_in_allocated_blocks
    assert sum(r.available_bytes for r in rows) == s.bytes_in_available_blocks
    pools = sum(r.num_pools for r in rows)
    assert sum(r.pool_header_bytes for r in rows) == s.bytes_lost_to_pool_headers
    assert s.pools_blocks.pool_overhead(pools) == dms.POOL_OVERHEAD
    assert sum(r.quantization for r in rows) == s.bytes_lost_to_quantization
    assert dms.POOL_SIZE == s.pool_size


def test_arenas_and_pools_blocks_agree_with_the_text():
    s = dms.SysDebugMallocStats()
    a, p = s.arenas, s.pools_blocks
    assert a.narenas == s.arenas_allocated_current and a.arena_size == s.arena_size
    assert a.arenas_reclaimed == s.arenas_reclaimed
    assert a.arenas_total == s.total == p.total
    assert p.numfreepools == s.unused_pools and p.unused_pool_total == s.unused_pools * s.pool_size
    # Each block can be built from its own text too, and prints it back.
    again = dms.DebugMallocArenas(repr(a).encode("ascii"))
    assert vars(again) == vars(a)
    assert repr(dms.DebugMallocPoolsBlocks(repr(p))) == repr(p)
    with pytest.raises(ValueError, match="narenas"):
        dms.DebugMallocArenas(b"# arenas allocated total = 3\n")
    with pytest.raises(TypeError, match="debug_malloc must be str or bytes"):
        dms.DebugMallocPoolsBlocks(3.5)


def test_type_stats_by_object_type():
    s = dms.SysDebugMallocStats()
    names = set(s.object_types())
    assert b"PyFloatObjects" in names and all(isinstance(n, bytes) for n in names)
    stat = s.type_stat(b"PyDictObjects")
    assert isinstance(stat, dms.DebugTypeStat) and stat.bytes_each == 48
    assert s.type_stat("PyDictObjects") == stat
    assert s.has_object_type(b"PyFloatObjects") and not s.has_object_type(b"NoSuchObjects")
    with pytest.raises(KeyError):
        s.type_stat(b"NoSuchObjects")
    assert len(s.type_stats) == len(s.free_lists)


def test_diff_debugmallocstats_of_a_real_block():
    before = dms.SysDebugMallocStats()
    kept = [(i, i + 1, i + 2, i + 3, i + 4) for i in range(20_000)]
    after = dms.SysDebugMallocStats()
    lines = dms.diff_debugmallocstats(before, after)
    assert lines[:2] == ["class   size   num pools   blocks in use  avail blocks",
                         "-----   ----   ---------   -------------  ------------"]
    # Some size class gained at least the 20,000 tuples kept.
    table = lines[2:lines.index("")]
    assert max(int(line.split()[3]) for line in table) >= len(kept)
    assert dms.diff_debugmallocstats(after, after) == []
    with pytest.raises(TypeError, match="a_stats"):
        dms.diff_debugmallocstats("text", after)


def test_diff_when_classes_differ_and_a_type_is_new():
    a = dms.SysDebugMallocStats(_fixture("cpython-3.11.txt"))
    b = dms.SysDebugMallocStats(a.text + "     3 free PyNewObjects * 40 bytes each =                  120\n")
    lines = dms.diff_debugmallocstats(a, b)
    assert lines[-1].startswith("+") and "PyNewObjects" in lines[-1]
    # Dropping a size class row is a diff of that class to zero, not an error.
    first = a.malloc_stats[0]
    c = dms.SysDebugMallocStats("\n".join(line for line in a.text.splitlines()
                                          if not line.startswith(repr(first))))
    diff = dms.diff_debugmallocstats(a, c)
    assert dms.diff_debug_malloc_stat(first, first._replace(num_pools=0, blocks_in_use=0,
                                                            avail_blocks=0)) in diff


def test_row_and_type_line_helpers():
    r = dms.DebugMallocStat(2, 48, 3, 100, 5)
    assert repr(r).split() == ["2", "48", "3", "100", "5"]
    assert dms.diff_debug_malloc_stat(r, r._replace(blocks_in_use=90)).split() == \
        ["2", "48", "+0", "-10", "+0"]
    with pytest.raises(ValueError, match="block_class"):
        dms.diff_debug_malloc_stat(r, r._replace(block_class=3))
    t = dms.DebugTypeStat(4, "PyDictObjects", 48, 192)
    assert repr(t).split() == ["4", "free", "PyDictObjects", "*", "48", "bytes", "each", "=", "192"]
    assert dms.diff_debug_type_stat(t, t._replace(free_count=2, bytes_total=96)).split()[0] == "-2"
