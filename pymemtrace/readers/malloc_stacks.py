"""Read a ``pymemtrace malloc`` capture aggregated by whole stack.

The aggregation is C (``pymemtrace._malloccap.stacks``, over
``src/core/capture_stacks.c``): two replays of the capture give, for every
distinct stack and thread, what was allocated in a range of events, what
was live at the high-water mark and what was live at the end of the range.
This module names those numbers (plain dicts and lists); the views are
:mod:`pymemtrace.reporters.malloc_views`.  It works per stack, never per event.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

__all__ = ["load_stacks", "parse_range", "parse_seconds", "resolve_range", "frames_of", "KINDS"]

KINDS = ("", "malloc", "calloc", "realloc", "memalign", "mmap")

_FUNC_FIELDS = ("file", "function", "allocated_bytes", "allocated_count", "peak_bytes",
                "peak_count", "leaked_bytes", "leaked_count", "self_allocated_bytes",
                "self_peak_bytes", "self_leaked_bytes")
_STACK_FIELDS = ("frame", "thread", "allocated_bytes", "allocated_count", "peak_bytes",
                 "peak_count", "leaked_bytes", "leaked_count")


def parse_range(spec: Optional[str], events: int) -> Tuple[int, int]:
    """``A:B`` -> the events [A, B): each side an event number or a percentage
    of the capture's events (``25%``); either side may be left out.

    >>> parse_range("10:", 100), parse_range(":50%", 1000)
    ((10, 100), (0, 500))
    """
    if not spec:
        return 0, events
    if spec.count(":") != 1:
        raise ValueError(f"--range must be START:END (event numbers, percentages or seconds), "
                         f"not {spec!r}")
    ends = []
    for side, default in zip(spec.split(":"), (0, events)):
        side = side.strip()
        if not side:
            ends.append(default)
            continue
        try:
            if side.endswith("%"):
                pct = float(side[:-1])
                if not 0 <= pct <= 100:
                    raise ValueError
                ends.append(round(events * pct / 100))
            else:
                n = int(side)
                if n < 0:
                    raise ValueError
                ends.append(min(n, events))
        except ValueError:
            raise ValueError(f"--range: {side!r} is neither an event number, a "
                             "percentage from 0% to 100% nor seconds (2.5s)") from None
    if ends[0] > ends[1]:
        raise ValueError(f"--range {spec}: its start comes after its end")
    return ends[0], ends[1]


def parse_seconds(spec: Optional[str]) -> Optional[Tuple[Optional[int], Optional[int]]]:
    """``2.5s:10s`` -> (2500000000, 10000000000): a range in seconds since the
    capture opened, in ns (a side left out: None); None when `spec` is not in
    seconds.

    >>> parse_seconds("2.5s:10s"), parse_seconds(":1s"), parse_seconds("10:20")
    ((2500000000, 10000000000), (None, 1000000000), None)
    """
    if not spec or spec.count(":") != 1:
        return None
    sides = [side.strip() for side in spec.split(":")]
    if not any(side.endswith("s") for side in sides):
        return None
    ns: List[Optional[int]] = []
    for side in sides:
        if not side:
            ns.append(None)
            continue
        try:
            if not side.endswith("s"):
                raise ValueError
            sec = float(side[:-1])
            if not 0 <= sec < 1e9:
                raise ValueError
        except ValueError:
            raise ValueError(f"--range {spec}: {side!r} is not a time in seconds (2.5s); "
                             "give both sides in seconds, or neither") from None
        ns.append(round(sec * 1e9))
    if ns[0] is not None and ns[1] is not None and ns[0] > ns[1]:
        raise ValueError(f"--range {spec}: its start comes after its end")
    return ns[0], ns[1]


def resolve_range(path: str, range_spec: Optional[str]) -> Tuple[int, int]:
    """The events [lo, hi) that `range_spec` names in the capture at `path`
    (all of them when it is None)."""
    from pymemtrace import _malloccap

    if not range_spec:
        return 0, 2 ** 64 - 1
    secs = parse_seconds(range_spec)
    if secs is not None:
        # the capture's TIME records place each time among the events (in C)
        r = _malloccap.stacks(path, lo_ns=secs[0], hi_ns=secs[1])
        if not r["has_clock"]:
            raise ValueError(f"--range {range_spec}: this capture has no clock (it was made "
                             "before capture format 4); give event numbers or percentages")
        return r["lo"], r["hi"]
    # the range may be in percent: learn how many events there are first
    total = _malloccap.stacks(path, lo=0, hi=0)["events"]
    return parse_range(range_spec, total)


def load_stacks(path: str, *, range_spec: Optional[str] = None, thread: Optional[int] = None,
                points: int = 400, slices: int = 0) -> Dict[str, Any]:
    """Aggregate the capture at `path` by stack (in C).

    Returns a dict: ``events``, ``range`` ([lo, hi) in events), ``peak``
    (``bytes`` and the ``event`` it was reached after), ``peak_live_bytes`` /
    ``peak_live_count`` (what the selected blocks held at ``live_peak``: the
    process's peak, or with ``thread`` that thread's own high-water mark,
    ``of_thread`` True; an aggregated capture has the process's only), ``functions``
    (inclusive and self totals), ``frames`` ([parent, function, line]),
    ``stacks`` (innermost ``frame``, ``thread`` index and the totals),
    ``threads``, ``points`` (the heap over the events: [event, heap bytes,
    seconds, RSS bytes], seconds and RSS from the capture's TIME records, 0
    without), ``clock`` (None without TIME records, else the seconds of the
    end, the peak and the range, and the highest RSS), ``cells`` (per-stack
    slices of the range), ``sizes`` and ``kinds``.  Raises ValueError naming
    what is wrong with a capture that cannot be read or a bad range.
    """
    from pymemtrace import _malloccap

    lo, hi = resolve_range(path, range_spec)
    raw = _malloccap.stacks(path, lo=lo, hi=hi, thread=thread, points=points, slices=slices)
    funcs = [dict(zip(_FUNC_FIELDS, f)) for f in raw["funcs"]]
    stacks = [dict(zip(_STACK_FIELDS, s)) for s in raw["stacks"]]
    threads = [{"id": t[0], "name": t[1], "allocated_bytes": t[2], "allocated_count": t[3]}
               for t in raw["threads"]]
    return {
        "events": raw["events"],
        "range": [raw["lo"], raw["hi"]],
        "stacks_recorded": bool(raw["stacks_recorded"]),
        "impossible_events": raw["impossible"],
        "peak": {"bytes": raw["peak_bytes"], "event": raw["peak_event"]},
        "heap_at_end": raw["end_heap"],
        "allocated_bytes": raw["alloc_bytes"], "allocated_count": raw["alloc_count"],
        "peak_live_bytes": raw["peak_live_bytes"], "peak_live_count": raw["peak_live_count"],
        # the peak the stacks' peak columns are taken at: the process's, or with a
        # thread selected that thread's own (not in an aggregated capture)
        "live_peak": {"of_thread": bool(raw["live_peak_of_thread"]),
                      "event": raw["live_peak_event"],
                      "seconds": raw["live_peak_ns"] / 1e9 if raw["has_clock"] else None},
        "leaked_bytes": raw["end_bytes"], "leaked_count": raw["end_count"],
        "functions": funcs,
        "frames": [list(f) for f in raw["frames"]],
        "stacks": stacks,
        "threads": threads,
        "thread_selected": thread,
        "points": [[e, h, ns / 1e9, rss] for e, h, ns, rss in raw["points"]],
        "clock": ({"end_s": raw["end_ns"] / 1e9, "peak_s": raw["peak_ns"] / 1e9,
                   "range_s": [raw["lo_ns"] / 1e9, raw["hi_ns"] / 1e9],
                   "rss_peak": raw["rss_peak"], "rss_peak_s": raw["rss_peak_ns"] / 1e9}
                  if raw["has_clock"] else None),
        "slices": raw["slices"],
        "cells": [list(c) for c in raw["cells"]],
        "sizes": [list(s) for s in raw["sizes"]],
        "kinds": {KINDS[k]: {"count": c, "bytes": b}
                  for k, (c, b) in enumerate(raw["kinds"]) if KINDS[k]},
    }


def frames_of(r: Dict[str, Any], frame: int) -> List[Tuple[str, str, int]]:
    """(function, file, line) of a stack's frames, innermost first."""
    out = []
    frames, funcs = r["frames"], r["functions"]
    while frame >= 0:
        parent, func, line = frames[frame]
        f = funcs[func]
        out.append((f["function"], f["file"], line))
        frame = parent
    return out
