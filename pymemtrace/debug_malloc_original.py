"""The original pymemtrace's object API for ``sys._debugmallocstats()`` text.

Users of the original pymemtrace (0.6) read a snapshot through these names:
``DebugMallocStat`` (one size class row), ``DebugTypeStat`` (one free-list
line), ``DebugMallocArenas`` and ``DebugMallocPoolsBlocks`` (the two blocks of
``label = value`` lines), the accessors of ``SysDebugMallocStats``
(``malloc_stats``, ``type_stats``, ``object_types()``, ``type_stat()``, ...)
and ``diff_debugmallocstats(a, b)``.  They are all re-exported by
:mod:`pymemtrace.debug_malloc_stats`; this module only holds them.

Every number comes from the C parser (``src/core/mallocstats_parse.c`` through
``_mallocstats``): nothing here reads the text line by line.  This module
builds the original's objects from the parsed rows and formats them.

Differences from the original, on purpose:

* ``diff_debugmallocstats`` matches size classes by class number, so two
  snapshots with different sets of non-empty classes (the interpreter omits
  classes without pools) can be compared; the original raised ValueError.
* A free list present only in the second snapshot is reported with the second
  snapshot's values (the original looked it up in the first and failed).
* ``POOL_OVERHEAD`` and ``POOL_SIZE`` are this interpreter's values and stay
  constant: constructing a snapshot does not rewrite module globals.
"""
from __future__ import annotations

import sys
import typing

from pymemtrace import _mallocstats

__all__ = [
    "POOL_SIZE", "POOL_OVERHEAD", "DebugMallocStat", "DebugTypeStat", "DebugMallocArenas",
    "DebugMallocPoolsBlocks", "diff_debug_malloc_stat", "diff_debug_type_stat",
    "diff_debugmallocstats", "OriginalSnapshotAPI", "as_text",
]

#: Bytes per pymalloc pool in this interpreter (16 KiB on 64-bit 3.10+, else 4 KiB).
POOL_SIZE = 16384 if sys.version_info >= (3, 10) and sys.maxsize > 2 ** 32 else 4096
#: Bytes of each pool's header (``sizeof(struct pool_header)`` rounded up).
POOL_OVERHEAD = 48 if sys.maxsize > 2 ** 32 else 32

_LABEL_WIDTH = 34
_VALUE_WIDTH = 20


def as_text(data, argname: str = "debug_malloc") -> typing.Optional[str]:
    """*data* (str, bytes, bytearray, memoryview or None) as str; empty bytes -> None."""
    if data is None or isinstance(data, str):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        if not raw:
            return None
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as err:
            raise ValueError(f"{argname} must be the ASCII text sys._debugmallocstats() "
                             f"writes; byte {err.start} is {raw[err.start]:#x}") from None
    raise TypeError(f"{argname} must be str or bytes (the output of sys._debugmallocstats()), "
                    f"a snapshot, or None, not {type(data).__name__}")


def _snapshot(data, argname: str) -> "_mallocstats.Snapshot":
    """A parsed snapshot from text, bytes or an existing snapshot."""
    if isinstance(data, _mallocstats.Snapshot):
        return data
    text = as_text(data, argname)
    if text is None:
        raise ValueError(f"{argname} is empty: give the text sys._debugmallocstats() writes")
    return _mallocstats.Snapshot(text, check=False)    # one block of the text


def _line(label: str, value: int, signed: bool = False) -> str:
    spec = f">+{_VALUE_WIDTH}," if signed else f">{_VALUE_WIDTH},"
    return f"{label:<{_LABEL_WIDTH}} = {format(value, spec)}"


class DebugMallocStat(typing.NamedTuple):
    """One row of the size class table, as the original pymemtrace names it."""
    block_class: int
    size: int
    num_pools: int
    blocks_in_use: int
    avail_blocks: int

    @property
    def allocated_bytes(self) -> int:
        """Bytes in the blocks in use."""
        return self.blocks_in_use * self.size

    @property
    def available_bytes(self) -> int:
        """Bytes in the free blocks of this class's pools."""
        return self.avail_blocks * self.size

    @property
    def pool_header_bytes(self) -> int:
        """Bytes of the pool headers of this class's pools."""
        return self.num_pools * POOL_OVERHEAD

    @property
    def quantization(self) -> int:
        """Bytes at the end of each pool too small for one more block."""
        return self.num_pools * ((POOL_SIZE - POOL_OVERHEAD) % self.size)

    def __repr__(self) -> str:
        return (f"{self.block_class:5d} {self.size:6d} {self.num_pools:11d} "
                f"{self.blocks_in_use:15d} {self.avail_blocks:13d}")


def _require_same(a, b, *fields: str) -> None:
    """ValueError naming the first of *fields* on which *a* and *b* differ."""
    for name in fields:
        if getattr(a, name) != getattr(b, name):
            raise ValueError(f"a.{name} != b.{name}: {getattr(a, name)} != {getattr(b, name)}")


def diff_debug_malloc_stat(a: DebugMallocStat, b: DebugMallocStat) -> str:
    """The row of signed changes from *a* to *b* (the same size class)."""
    _require_same(a, b, "block_class", "size")
    return (f"{a.block_class:5d} {a.size:6d} {b.num_pools - a.num_pools:+11d} "
            f"{b.blocks_in_use - a.blocks_in_use:+15d} {b.avail_blocks - a.avail_blocks:+13d}")


class DebugTypeStat(typing.NamedTuple):
    """One free-list line, e.g. ``52 free 2-sized PyTupleObjects * 40 bytes each = 2,080``."""
    free_count: int
    object_type: str
    bytes_each: int
    bytes_total: int

    def __repr__(self) -> str:
        head = f"{self.free_count} free {self.object_type} * {self.bytes_each} bytes each"
        return f"{head:>48} = {self.bytes_total:>{_VALUE_WIDTH},}"


def diff_debug_type_stat(a: DebugTypeStat, b: DebugTypeStat) -> str:
    """The free-list line of signed changes from *a* to *b* (the same list)."""
    _require_same(a, b, "object_type", "bytes_each")
    head = f"{b.free_count - a.free_count:+d} free {a.object_type} * {a.bytes_each} bytes each"
    return f"{head:>48} = {b.bytes_total - a.bytes_total:>+{_VALUE_WIDTH},}"


def _value(snap, label: str) -> typing.Optional[int]:
    for section, lab, count, value in snap._values:
        if lab == label and section in ("arenas", "bytes"):
            return value
    return None


def _counted(snap, prefix: str) -> typing.Optional[typing.Tuple[int, int]]:
    """(count, unit size) of a line such as ``18 arenas * 262144 bytes/arena``."""
    for section, lab, count, value in snap._values:
        if count is not None and lab.startswith(prefix):
            return count, int(lab[len(prefix):].split()[0])
    return None


def _read_block(owner, debug_malloc, labels: typing.Dict[str, str], prefix: str,
                count_name: typing.Optional[str], unit_name: str) -> None:
    """Set owner's attributes from the text: each of *labels* (attribute ->
    label of its line) and the count and unit of the ``N <prefix> U ...``
    line; ValueError naming whatever the text lacks."""
    snap = _snapshot(debug_malloc, "debug_malloc")
    found = {name: _value(snap, label) for name, label in labels.items()}
    counted = _counted(snap, prefix)
    if count_name:
        found[count_name] = counted[0] if counted else None
    found[unit_name] = counted[1] if counted else None
    missing = [name for name, v in found.items() if v is None]
    if missing:
        raise ValueError(f"{type(owner).__name__}: the text has no value for "
                         f"{', '.join(missing)} (is it the output of sys._debugmallocstats() "
                         f"under pymalloc?)")
    for name, value in found.items():
        setattr(owner, name, value)


class DebugMallocArenas:
    """The arenas block: how many arenas, ever and now, and their size.

    Built from ``sys._debugmallocstats()`` text (str or bytes) or a snapshot.
    """

    ntimes_arena_allocated: int
    narenas_highwater: int
    narenas: int
    arena_size: int

    def __init__(self, debug_malloc) -> None:
        _read_block(self, debug_malloc, {
            "ntimes_arena_allocated": "# arenas allocated total",
            "narenas_highwater": "# arenas highwater mark",
            "narenas": "# arenas allocated current",
        }, "arenas * ", None, "arena_size")

    @property
    def arenas_reclaimed(self) -> int:
        return self.ntimes_arena_allocated - self.narenas

    @property
    def arenas_total(self) -> int:
        return self.narenas * self.arena_size

    def __repr__(self) -> str:
        return "\n".join([
            _line("# arenas allocated total", self.ntimes_arena_allocated),
            _line("# arenas reclaimed", self.arenas_reclaimed),
            _line("# arenas highwater mark", self.narenas_highwater),
            _line("# arenas allocated current", self.narenas),
            _line(f"{self.narenas} arenas * {self.arena_size} bytes/arena", self.arenas_total),
        ])


class DebugMallocPoolsBlocks:
    """The bytes block: where the arenas' bytes are (blocks, free pools, overheads).

    Built from ``sys._debugmallocstats()`` text (str or bytes) or a snapshot.
    """

    allocated_bytes: int
    available_bytes: int
    pool_header_bytes: int
    quantization: int
    arena_alignment: int
    numfreepools: int
    pool_size: int

    def __init__(self, debug_malloc) -> None:
        _read_block(self, debug_malloc, {
            "allocated_bytes": "# bytes in allocated blocks",
            "available_bytes": "# bytes in available blocks",
            "pool_header_bytes": "# bytes lost to pool headers",
            "quantization": "# bytes lost to quantization",
            "arena_alignment": "# bytes lost to arena alignment",
        }, "unused pools * ", "numfreepools", "pool_size")

    @property
    def unused_pool_total(self) -> int:
        return self.numfreepools * self.pool_size

    @property
    def total(self) -> int:
        return (self.allocated_bytes + self.available_bytes + self.unused_pool_total
                + self.pool_header_bytes + self.quantization + self.arena_alignment)

    def pool_overhead(self, num_pools: int) -> int:
        """Bytes of header per pool, given the number of pools in use."""
        if num_pools <= 0:
            raise ValueError(f"num_pools must be > 0, not {num_pools}")
        return self.pool_header_bytes // num_pools

    def __repr__(self) -> str:
        return "\n".join([
            _line("# bytes in allocated blocks", self.allocated_bytes),
            _line("# bytes in available blocks", self.available_bytes),
            _line(f"{self.numfreepools} unused pools * {self.pool_size} bytes",
                  self.unused_pool_total),
            _line("# bytes lost to pool headers", self.pool_header_bytes),
            _line("# bytes lost to quantization", self.quantization),
            _line("# bytes lost to arena alignment", self.arena_alignment),
            _line("Total", self.total),
        ])


def _type_name(free_list_name: str) -> str:
    return free_list_name[5:] if free_list_name.startswith("free ") else free_list_name


def _type_key(object_type) -> bytes:
    if isinstance(object_type, str):
        return object_type.encode("ascii", "replace")
    return bytes(object_type)


class OriginalSnapshotAPI:
    """Mixin: the original pymemtrace's accessors on a parsed snapshot."""

    @property
    def malloc_stats(self) -> typing.List[DebugMallocStat]:
        """The size class rows (classes without pools are not listed)."""
        return [DebugMallocStat(*row) for row in self._classes]

    @property
    def type_stats(self) -> typing.List[DebugTypeStat]:
        """The free-list lines."""
        return [DebugTypeStat(count, _type_name(name), each, total)
                for name, count, each, total in self._free_lists]

    @property
    def type_map(self) -> typing.Dict[bytes, int]:
        """{object type as bytes: index into type_stats}."""
        return {_type_key(_type_name(row[0])): i for i, row in enumerate(self._free_lists)}

    def object_types(self) -> typing.KeysView[bytes]:
        """The object types that have a free-list line, as bytes."""
        return self.type_map.keys()

    def has_object_type(self, object_type) -> bool:
        """True if *object_type* (bytes or str, e.g. b'PyDictObjects') has a line."""
        return _type_key(object_type) in self.type_map

    def type_stat(self, object_type) -> DebugTypeStat:
        """The DebugTypeStat of *object_type*; KeyError if absent."""
        return self.type_stats[self.type_map[_type_key(object_type)]]

    @property
    def arenas(self) -> DebugMallocArenas:
        """The arenas block (ValueError without pymalloc statistics)."""
        return DebugMallocArenas(self)

    @property
    def pools_blocks(self) -> DebugMallocPoolsBlocks:
        """The bytes block (ValueError without pymalloc statistics)."""
        return DebugMallocPoolsBlocks(self)


_TABLE_HEAD = [
    "class   size   num pools   blocks in use  avail blocks",
    "-----   ----   ---------   -------------  ------------",
]


def _diff_classes(a, b) -> typing.List[str]:
    old = {row.block_class: row for row in a.malloc_stats}
    new = {row.block_class: row for row in b.malloc_stats}
    out = []
    for index in sorted(set(old) | set(new)):
        size = (old.get(index) or new.get(index)).size
        o = old.get(index, DebugMallocStat(index, size, 0, 0, 0))
        n = new.get(index, DebugMallocStat(index, size, 0, 0, 0))
        if o != n:
            out.append(diff_debug_malloc_stat(o, n))
    return _TABLE_HEAD + out if out else []


def _diff_arenas(a: DebugMallocArenas, b: DebugMallocArenas) -> typing.List[str]:
    out = []
    for label, name in (("# arenas allocated total", "ntimes_arena_allocated"),
                        ("# arenas reclaimed", "arenas_reclaimed"),
                        ("# arenas highwater mark", "narenas_highwater"),
                        ("# arenas allocated current", "narenas")):
        delta = getattr(b, name) - getattr(a, name)
        if delta:
            out.append(_line(label, delta, signed=True))
    if b.narenas != a.narenas:
        out.append(_line(f"{b.narenas - a.narenas:+d} arenas * {a.arena_size} bytes/arena",
                         b.arenas_total - a.arenas_total, signed=True))
    return out


def _diff_pools(a: DebugMallocPoolsBlocks, b: DebugMallocPoolsBlocks) -> typing.List[str]:
    out = []
    for label, name in (("# bytes in allocated blocks", "allocated_bytes"),
                        ("# bytes in available blocks", "available_bytes"),
                        (None, "numfreepools"),
                        ("# bytes lost to pool headers", "pool_header_bytes"),
                        ("# bytes lost to quantization", "quantization"),
                        ("# bytes lost to arena alignment", "arena_alignment"),
                        ("Total", "total")):
        delta = getattr(b, name) - getattr(a, name)
        if not delta:
            continue
        if label is None:
            out.append(_line(f"{delta:+d} unused pools * {a.pool_size} bytes",
                             b.unused_pool_total - a.unused_pool_total, signed=True))
        else:
            out.append(_line(label, delta, signed=True))
    return out


def _diff_types(a, b) -> typing.List[str]:
    out = []
    for key in sorted(set(a.object_types()) | set(b.object_types())):
        if a.has_object_type(key) and b.has_object_type(key):
            sa, sb = a.type_stat(key), b.type_stat(key)
            if sa != sb:
                out.append(diff_debug_type_stat(sa, sb))
        elif a.has_object_type(key):
            out.append(f"-{a.type_stat(key)!r}")
        else:
            out.append(f"+{b.type_stat(key)!r}")
    return out


def diff_debugmallocstats(a_stats, b_stats) -> typing.List[str]:
    """What changed from snapshot *a_stats* to *b_stats*, as a list of lines.

    The layout is ``sys._debugmallocstats()``'s with signed deltas: the size
    classes that changed (under the table header), then the arenas, bytes and
    free-list lines that changed, each group after a blank line.  Values the
    text derives (arenas reclaimed, Total) are recomputed from their parts.
    Unchanged snapshots give ``[]``.
    """
    for name, s in (("a_stats", a_stats), ("b_stats", b_stats)):
        if not isinstance(s, OriginalSnapshotAPI):
            raise TypeError(f"{name} must be a SysDebugMallocStats, not {type(s).__name__}")
    ret = _diff_classes(a_stats, b_stats)
    if a_stats.pymalloc and b_stats.pymalloc:
        for block in (_diff_arenas(a_stats.arenas, b_stats.arenas),
                      _diff_pools(a_stats.pools_blocks, b_stats.pools_blocks)):
            if block:
                ret.append("")
                ret.extend(block)
    types = _diff_types(a_stats, b_stats)
    if types:
        ret.append("")
        ret.extend(types)
    return ret
