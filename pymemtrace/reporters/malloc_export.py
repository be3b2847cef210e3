"""A capture in the formats other tools read: pprof and collapsed stacks.

* pprof: gzipped profile.proto, as ``go tool pprof``, Pyroscope, Parca and
  Grafana read it, with Go's heap sample types alloc_objects, alloc_space,
  inuse_objects, inuse_space (in use: live at the high-water mark, or at the
  end).  The protobuf is encoded in C (``src/core/pprof.c``); gzip is zlib's.
* collapsed stacks: one line per stack, ``outer;...;inner BYTES``, the input
  of flamegraph.pl, speedscope and most flame-graph viewers.
"""
from __future__ import annotations

import gzip
from typing import Any, Dict, Optional

from pymemtrace.readers.malloc_stacks import frames_of, resolve_range
from pymemtrace.reporters.malloc_views import MEASURES

__all__ = ["pprof_profile", "collapsed"]


def pprof_profile(path: str, *, range_spec: Optional[str] = None, thread: Optional[int] = None,
                  inuse: str = "peak", time_ns: int = 0) -> bytes:
    """The capture at `path` as a gzipped pprof profile.

    inuse: ``"peak"`` (live at the high-water mark) or ``"end"`` (live at
    the end of the range: leaks).  Raises ValueError for a capture that
    cannot be read or a bad range.
    """
    from pymemtrace import _malloccap

    if inuse not in ("peak", "end"):
        raise ValueError(f"inuse must be 'peak' or 'end', not {inuse!r}")
    lo, hi = resolve_range(path, range_spec)
    raw = _malloccap.pprof(path, lo=lo, hi=hi, thread=thread, inuse_at_end=inuse == "end",
                           time_ns=time_ns)
    return gzip.compress(raw, compresslevel=6, mtime=0)


def _frame_name(function: str, file: str, line: int) -> str:
    name = f"{function} ({file}:{line})" if file else function
    return name.replace(";", ":").replace("\n", " ")


def collapsed(r: Dict[str, Any], view: str = "peak") -> str:
    """Collapsed stacks of a view (peak, leaks or all): ``outer;...;inner BYTES``."""
    key = MEASURES[view][0]
    lines = []
    for s in r["stacks"]:
        if s[key]:
            names = [_frame_name(*f) for f in reversed(frames_of(r, s["frame"]))]
            lines.append(f"{';'.join(names)} {s[key]}")
    return "\n".join(lines) + ("\n" if lines else "")
