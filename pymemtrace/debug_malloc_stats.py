"""Snapshots and diffs of CPython's small-object allocator (``sys._debugmallocstats``).

:func:`get_debugmallocstats` returns the text ``sys._debugmallocstats()``
writes to stderr, as bytes (as the original pymemtrace returns it).  :class:`SysDebugMallocStats` is one snapshot,
parsed.  :class:`DiffSysDebugMallocStats` is a context manager that takes a
snapshot on entry and on exit; its :meth:`~DiffSysDebugMallocStats.diff`
shows only what changed, with signed deltas, in the layout of
``sys._debugmallocstats()``::

    from pymemtrace import debug_malloc_stats

    with debug_malloc_stats.DiffSysDebugMallocStats() as malloc_diff:
        ...
    print(malloc_diff.diff())

How the snapshot works: the interpreter's own writer (the one
``sys._debugmallocstats()`` uses) writes into an in-memory stream over a
buffer the snapshot owns, and C code (``src/core/mallocstats_parse.c``) parses it
into a fixed structure the snapshot owns.  File descriptor 2 is never
touched, and between the two snapshots of a ``with`` block the machinery
creates and frees no Python object, so the diff shows the block and nothing
else: an empty block diffs to "No change.", and a block that keeps N objects
of one size class shows exactly +N blocks in use in that class.

Python objects (the lists and named tuples below) are only built when you
read a snapshot's attributes, after the block.

The allocator is shared by the whole process: allocations made by other
threads while the block runs are in the diff too.  ``as name`` binds after
the first snapshot: at module level, binding a *new* global name can resize
the module's dict (inside a function it allocates nothing).

The original pymemtrace's names work too (see
:mod:`pymemtrace.debug_malloc_original`): ``SysDebugMallocStats(bytes)``,
its ``malloc_stats``, ``type_stats``, ``object_types()``, ``type_stat()``,
``arenas``, ``pools_blocks``; ``DebugMallocStat``, ``DebugTypeStat``,
``DebugMallocArenas``, ``DebugMallocPoolsBlocks``, ``diff_debugmallocstats``.
"""
from __future__ import annotations

import typing

from pymemtrace import _mallocstats
from pymemtrace.debug_malloc_original import (
    POOL_SIZE, POOL_OVERHEAD, DebugMallocStat, DebugTypeStat, DebugMallocArenas,
    DebugMallocPoolsBlocks, diff_debug_malloc_stat, diff_debug_type_stat, diff_debugmallocstats,
    OriginalSnapshotAPI, as_text)

__all__ = [
    "get_debugmallocstats", "allocator", "SysDebugMallocStats", "DiffSysDebugMallocStats",
    "PymallocUnavailableError", "SizeClass", "FreeList", "Value",
    # the original pymemtrace's names
    "POOL_SIZE", "POOL_OVERHEAD", "DebugMallocStat", "DebugTypeStat", "DebugMallocArenas",
    "DebugMallocPoolsBlocks", "diff_debug_malloc_stat", "diff_debug_type_stat",
    "diff_debugmallocstats",
]


class SizeClass(typing.NamedTuple):
    """One row of the size class table."""
    index: int
    size: int
    num_pools: int
    blocks_in_use: int
    avail_blocks: int


class FreeList(typing.NamedTuple):
    """One free-list line, e.g. ``free 2-sized PyTupleObjects``."""
    name: str
    count: int
    size_each: int
    total: int


class Value(typing.NamedTuple):
    """One ``label = value`` line.  *section* is one of ``'arenas'``,
    ``'bytes'``, ``'arena_map_counts'``, ``'arena_map_bytes'``,
    ``'mimalloc'``, ``'other'``; *count* is the leading count of lines such as
    ``3 arenas * 1048576 bytes/arena`` (else None)."""
    section: str
    label: str
    count: typing.Optional[int]
    value: int


class PymallocUnavailableError(RuntimeError):
    """The interpreter's object allocator is not pymalloc: no size classes to diff."""


def get_debugmallocstats() -> bytes:
    """The text ``sys._debugmallocstats()`` writes to stderr, returned as bytes.

    Written into memory by the interpreter's own writer: stderr is untouched.
    """
    return _mallocstats.get_debugmallocstats().encode("ascii", "replace")


def allocator() -> str:
    """Which statistics the interpreter writes: ``'pymalloc'``, ``'mimalloc'``
    (3.13 builds that use it) or ``'none'`` (``PYTHONMALLOC=malloc`` or a build
    without pymalloc: only the free lists)."""
    return _mallocstats.allocator()


def _no_pymalloc_message() -> str:
    import tracemalloc
    if tracemalloc.is_tracing():
        return ("debug_malloc_stats: tracemalloc is tracing, and was already tracing when "
                "pymemtrace's debug_malloc_stats was first used, so the interpreter reports no "
                "pymalloc statistics (it sees tracemalloc's hook, not pymalloc).  Import and use "
                "debug_malloc_stats once before tracemalloc.start(), or stop tracemalloc.")
    return ("debug_malloc_stats: this interpreter does not use pymalloc for Python objects "
            "(PYTHONMALLOC=malloc or malloc_debug, or a build --without-pymalloc), so "
            "sys._debugmallocstats() reports no size classes, arenas or pools, only the "
            "free lists.  Run without PYTHONMALLOC set, or use trace_malloc instead.")


class SysDebugMallocStats(OriginalSnapshotAPI, _mallocstats.Snapshot):
    """One snapshot of the small-object allocator, parsed.

    ``SysDebugMallocStats()`` takes a snapshot now;
    ``SysDebugMallocStats(text)`` parses text (str or bytes) that
    ``sys._debugmallocstats()`` wrote (CPython 3.8 to 3.13 layouts; other
    text, the empty str included, raises ValueError saying what is wrong);
    empty bytes take a snapshot now, as in the original pymemtrace;
    ``SysDebugMallocStats(take=False)`` is empty until :meth:`take` is called.
    ``repr()`` of a pymalloc snapshot is the text itself.

    Attributes: ``text``, ``pymalloc``, ``mimalloc``, ``small_block_threshold``,
    ``num_size_classes``, ``size_classes`` (list of :class:`SizeClass`),
    ``values`` (list of :class:`Value`), ``free_lists`` (list of
    :class:`FreeList`), ``unparsed_lines``, and the named values below.
    """

    def __init__(self, text=None, *, take: bool = True) -> None:
        super().__init__(as_text(text, "text"), take=take)

    @property
    def size_classes(self) -> typing.List[SizeClass]:
        """The size class table (classes with no pool are not listed)."""
        return [SizeClass(*row) for row in self._classes]

    @property
    def values(self) -> typing.List[Value]:
        """Every ``label = value`` line."""
        return [Value(*row) for row in self._values]

    @property
    def free_lists(self) -> typing.List[FreeList]:
        """Every free-list line."""
        return [FreeList(*row) for row in self._free_lists]

    def size_class(self, index: int) -> SizeClass:
        """The row of size class *index* (zeros if it has no pool)."""
        for row in self._classes:
            if row[0] == index:
                return SizeClass(*row)
        return SizeClass(index, (index + 1) * 16, 0, 0, 0)

    def value(self, label: str, section: typing.Optional[str] = None) -> typing.Optional[int]:
        """The value of the line labelled *label* (e.g. ``'# arenas reclaimed'``,
        or ``'Total'`` with ``section='bytes'``), or None if absent."""
        for row in self._values:
            if row[1] == label and (section is None or row[0] == section):
                return row[3]
        return None

    def _counted(self, prefix: str) -> typing.Optional[Value]:
        for row in self._values:
            if row[2] is not None and row[1].startswith(prefix):
                return Value(*row)
        return None

    @property
    def arenas_allocated_total(self) -> typing.Optional[int]:
        return self.value("# arenas allocated total")

    @property
    def arenas_reclaimed(self) -> typing.Optional[int]:
        return self.value("# arenas reclaimed")

    @property
    def arenas_highwater_mark(self) -> typing.Optional[int]:
        return self.value("# arenas highwater mark")

    @property
    def arenas_allocated_current(self) -> typing.Optional[int]:
        return self.value("# arenas allocated current")

    @property
    def arena_size(self) -> typing.Optional[int]:
        """Bytes per arena (256 KiB before 3.10, 1 MiB after)."""
        v = self._counted("arenas * ")
        return int(v.label.split()[2]) if v else None

    @property
    def bytes_in_allocated_blocks(self) -> typing.Optional[int]:
        return self.value("# bytes in allocated blocks")

    @property
    def bytes_in_available_blocks(self) -> typing.Optional[int]:
        return self.value("# bytes in available blocks")

    @property
    def unused_pools(self) -> typing.Optional[int]:
        v = self._counted("unused pools * ")
        return v.count if v else None

    @property
    def pool_size(self) -> typing.Optional[int]:
        """Bytes per pool (4 KiB before 3.10, 16 KiB after)."""
        v = self._counted("unused pools * ")
        return int(v.label.split()[3]) if v else None

    @property
    def bytes_lost_to_pool_headers(self) -> typing.Optional[int]:
        return self.value("# bytes lost to pool headers")

    @property
    def bytes_lost_to_quantization(self) -> typing.Optional[int]:
        return self.value("# bytes lost to quantization")

    @property
    def bytes_lost_to_arena_alignment(self) -> typing.Optional[int]:
        return self.value("# bytes lost to arena alignment")

    @property
    def total(self) -> typing.Optional[int]:
        """The bytes of all arenas (the first "Total" line)."""
        return self.value("Total", "bytes")

    def free_list(self, name: str) -> typing.Optional[FreeList]:
        """The free list called *name*, e.g. ``'free PyDictObjects'``."""
        for row in self._free_lists:
            if row[0] == name:
                return FreeList(*row)
        return None

    def size_class_deltas(self, before: "SysDebugMallocStats") -> typing.Dict[int, SizeClass]:
        """{index: SizeClass of deltas} for the classes that changed since *before*."""
        old = {row[0]: row for row in before._classes}
        new = {row[0]: row for row in self._classes}
        out = {}
        for index in sorted(set(old) | set(new)):
            o = old.get(index, (index, 0, 0, 0, 0))
            n = new.get(index, (index, 0, 0, 0, 0))
            d = (n[2] - o[2], n[3] - o[3], n[4] - o[4])
            if any(d):
                out[index] = SizeClass(index, max(o[1], n[1]), *d)
        return out

    def diff(self, before: "SysDebugMallocStats") -> str:
        """What changed from *before* to this snapshot, in the diff layout."""
        return self.diff_from(before)

    def __repr__(self) -> str:
        if not self.taken:
            return f"<{type(self).__name__} (not taken)>"
        if self.pymalloc:
            return self.text
        return f"<{type(self).__name__} {'mimalloc' if self.mimalloc else 'no pymalloc'}>"


class DiffSysDebugMallocStats(_mallocstats.Diff):
    """Context manager: the small-object allocator before and after a block.

    ``diff()`` (after the block) is what changed, in ``sys._debugmallocstats()``
    layout with signed deltas; ``before`` and ``after`` are the two
    :class:`SysDebugMallocStats`; ``size_class_deltas()`` the changed classes.
    Exceptions raised in the block propagate after the finishing snapshot.
    Raises :class:`PymallocUnavailableError` if the interpreter does not use
    pymalloc (``PYTHONMALLOC=malloc``).
    """

    def __init__(self) -> None:
        # Diff.__init__ takes a first (sizing) snapshot into before.
        super().__init__(SysDebugMallocStats(take=False), SysDebugMallocStats(take=False))
        if not (self.before.pymalloc or self.before.mimalloc):
            raise PymallocUnavailableError(_no_pymalloc_message())

    def size_class_deltas(self) -> typing.Dict[int, SizeClass]:
        """{index: SizeClass of deltas} for the classes the block changed."""
        self.diff()   # raises if the block has not ended
        return self.after.size_class_deltas(self.before)

    def __repr__(self) -> str:
        state = "finished" if self.finished else "active" if self.active else "new"
        return f"<{type(self).__name__} {state}>"
