"""A capture's flame graph as one self-contained HTML file.

The page needs no network: its script and style are ours
(``pymemtrace/reporters/templates/flamegraph.html``) and the capture's data is embedded
in it as JSON.  In the browser: switch between peak / leaks / all
allocations / a time range (sliders over the heap timeline), click a frame
to zoom, search by regular expression.  The data is per stack (the C
aggregation, :mod:`pymemtrace.readers.malloc_stacks`), so the file's size grows with
distinct stacks, not with events.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Dict, List, Optional, Tuple

from pymemtrace.readers.malloc_stacks import load_stacks
from pymemtrace.reporters.malloc_views import fmt_bytes, peak_of_thread, thread_peak

__all__ = ["render", "render_capture", "page_data"]

TEMPLATE = pathlib.Path(__file__).resolve().parent / "templates" / "flamegraph.html"
SLICES = 64


def seconds_at(r: Dict[str, Any], events: List[int]) -> List[float]:
    """The capture's clock at each of `events` (ascending), from the heap samples."""
    pts, out, k = r["points"], [], 0
    for e in events:
        while k < len(pts) and pts[k][0] <= e:
            k += 1
        out.append(round(pts[k - 1][2] if k else 0.0, 3))
    return out


def page_data(r: Dict[str, Any], title: str, facts: str) -> Dict[str, Any]:
    """The JSON the page embeds: compact rows, per stack and per frame."""
    lo, hi = r["range"]
    n = hi - lo
    s = r["slices"]
    starts = [lo + -(-k * n // s) for k in range(s + 1)] if s else [lo, hi]
    return {
        "title": title,
        "facts": facts,
        "events": r["events"],
        "peak_event": r["peak"]["event"],
        "peak_bytes": r["peak"]["bytes"],
        # with --thread: that thread's own peak, where the peak view is taken
        "thread_peak": ({"thread": r["thread_selected"], "event": r["live_peak"]["event"],
                         "bytes": r["peak_live_bytes"]}
                        if peak_of_thread(r) else None),
        "points": r["points"],
        "funcs": [[f["function"], f["file"]] for f in r["functions"]],
        "frames": r["frames"],
        # frame, allocated bytes/count, peak bytes/count, leaked bytes/count
        "stacks": [[st["frame"], st["allocated_bytes"], st["allocated_count"], st["peak_bytes"],
                    st["peak_count"], st["leaked_bytes"], st["leaked_count"]]
                   for st in r["stacks"]],
        "slices": s,
        "slice_start": starts,
        # the capture's clock (format 4): seconds at each slice's start, for the slider
        "slice_time": seconds_at(r, starts) if r.get("clock") else None,
        "end_s": r["clock"]["end_s"] if r.get("clock") else None,
        "peak_s": r["clock"]["peak_s"] if r.get("clock") else None,
        "cells": r["cells"],
    }


def render(r: Dict[str, Any], title: str, facts: str) -> str:
    """The whole HTML page for the aggregated capture `r`."""
    data = json.dumps(page_data(r, title, facts), separators=(",", ":"))
    # nothing in the data may end the <script> element it sits in
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    slot = '<script id="pmt-data" type="application/json">PMT_DATA</script>'
    page = TEMPLATE.read_text(encoding="utf-8")
    if slot not in page:
        raise RuntimeError(f"{TEMPLATE} has lost its data slot: reinstall pymemtrace")
    return page.replace(slot, slot.replace("PMT_DATA", data))


def render_capture(path: str, *, range_spec: Optional[str] = None,
                   thread: Optional[int] = None) -> Tuple[str, Dict[str, Any]]:
    """Aggregate the capture at `path`; its page and the aggregation."""
    r = load_stacks(path, range_spec=range_spec, thread=thread, points=800, slices=SLICES)
    facts = (f"{r['events']:,} events; peak {fmt_bytes(r['peak']['bytes'])} after event "
             f"{r['peak']['event']:,}; {fmt_bytes(r['leaked_bytes'])} still live at the end; "
             f"{len(r['stacks']):,} distinct stacks"
             + (f"; {thread_peak(r)} (the peak view is taken there)" if peak_of_thread(r) else "")
             + ("" if r["stacks_recorded"] else " (captured without --stacks: one frame each)"))
    return render(r, os.path.basename(path), facts), r
