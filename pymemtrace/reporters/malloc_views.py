"""The views of a ``pymemtrace malloc`` capture by whole stack, as text and JSON.

Views (read by :mod:`pymemtrace.readers.malloc_stacks`):

* ``peak`` (the default): memory live at the high-water mark, by stack:
  what to shrink to lower the peak;
* ``leaks``: memory still live at the end (of the capture, or of the range);
* ``all``: everything allocated, by stack (bytes and counts);
* ``time``: the heap over the events with the peak marked;
* ``summary``: sizes and allocators.

Each stack view lists the biggest stacks (innermost frame first), then every
function inclusively (what it and its callees hold) and by allocating line.
Everything here is per stack, never per event.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

from pymemtrace.readers.malloc_stacks import frames_of
from pymemtrace.reporters.malloc_text import fmt_bytes

__all__ = ["VIEWS", "MEASURES", "rows", "by_line", "stacks_json", "size_classes", "to_json",
           "format_view", "format_time", "format_summary", "scope", "fmt_bytes", "frame_label"]

VIEWS = ("peak", "leaks", "all", "time", "summary")

# view -> (bytes key, count key) of a stack or function row
MEASURES = {
    "peak": ("peak_bytes", "peak_count"),
    "leaks": ("leaked_bytes", "leaked_count"),
    "all": ("allocated_bytes", "allocated_count"),
}

_STACK_TOTALS = ("allocated_bytes", "allocated_count", "peak_bytes", "peak_count",
                 "leaked_bytes", "leaked_count")


def frame_label(function: str, file: str, line: int) -> str:
    """``function (file:line)``, or the function alone when it has no file."""
    return f"{function} ({file}:{line})" if file else function


def rows(r: Dict[str, Any], view: str, what: str = "stacks") -> List[Dict[str, Any]]:
    """The nonzero stacks (or functions) of a view, biggest first."""
    b, c = MEASURES[view]
    got = [s for s in r[what] if s[b] or s[c]]
    got.sort(key=lambda s: (-s[b], -s[c]))
    return got


def by_line(r: Dict[str, Any], view: str) -> List[Dict[str, Any]]:
    """A view summed by allocating line (each stack's innermost frame)."""
    b, c = MEASURES[view]
    acc: Dict[Tuple[str, str, int], Dict[str, Any]] = {}
    for s in r["stacks"]:
        if not (s[b] or s[c]):
            continue
        function, file, line = frames_of(r, s["frame"])[0]
        row = acc.setdefault((file, function, line), {"file": file, "function": function,
                                                      "line": line, "bytes": 0, "count": 0})
        row["bytes"] += s[b]
        row["count"] += s[c]
    return sorted(acc.values(), key=lambda x: (-x["bytes"], -x["count"]))


def thread_name(r: Dict[str, Any], index: int) -> str:
    t = r["threads"][index] if index < len(r["threads"]) else {"id": 0, "name": ""}
    if not t["id"]:
        if any(u["id"] for u in r["threads"]):
            return "unknown (not recorded for this stack)"
        return "all threads (this capture does not tell threads apart)"
    return f"{t['id']} {t['name']}".rstrip()


def stacks_json(r: Dict[str, Any], view: str,
                limit: Optional[int] = None) -> List[Dict[str, Any]]:
    """The stacks of a view as JSON rows with their frames written out."""
    out = []
    for s in rows(r, view if view in MEASURES else "all")[:limit]:
        t = r["threads"][s["thread"]] if s["thread"] < len(r["threads"]) else {"id": 0}
        out.append({
            "frames": [{"function": f, "file": fi, "line": ln}
                       for f, fi, ln in frames_of(r, s["frame"])],
            "thread": t["id"],
            **{k: s[k] for k in _STACK_TOTALS},
        })
    return out


def size_classes(r: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Allocations by size class: sizes[k] holds sizes in (2^(k-1), 2^k]."""
    out = []
    for k, (count, nbytes) in enumerate(r["sizes"]):
        if count:
            lo = 0 if k == 0 else (1 << (k - 1)) + 1
            out.append({"from": lo, "to": 1 << k, "count": count, "bytes": nbytes})
    return out


def short_file(path: str, width: int = 48) -> str:
    """A file name shortened from the left to `width` characters."""
    if len(path) <= width:
        return path
    base = os.path.basename(path)
    return "..." + path[-(width - 3):] if len(base) < width - 3 else base


def scope(r: Dict[str, Any]) -> str:
    lo, hi = r["range"]
    span = "all events" if (lo, hi) == (0, r["events"]) else f"events {lo:,} to {hi:,}"
    who = ("all threads" if r["thread_selected"] is None
           else f"thread {r['thread_selected']}")
    return f"{span} of {r['events']:,}, {who}"


def peak_of_thread(r: Dict[str, Any]) -> bool:
    """Are the stacks' peak figures at one selected thread's own high-water
    mark (else at the process's)?"""
    return bool(r.get("live_peak", {}).get("of_thread"))


def thread_peak(r: Dict[str, Any]) -> str:
    """With one thread selected: its own high-water mark, where the stacks'
    peak figures are taken (else "": they are at the process's)."""
    if not peak_of_thread(r):
        return ""
    p = r["live_peak"]
    return (f"thread {r['thread_selected']}'s own high-water mark: "
            f"{r['peak_live_bytes']:,} bytes ({fmt_bytes(r['peak_live_bytes'])}) in "
            f"{r['peak_live_count']:,} blocks made in the range, after event {p['event']:,}")


def to_json(cap: Dict[str, Any], r: Dict[str, Any], view: str) -> Dict[str, Any]:
    """The keys of the per-line report (total_bytes, peak_bytes, by_python_site, leaks, ...) and
    the stacks, functions, heap over time and summary of every view."""
    out = dict(cap)
    sort = view if view in MEASURES else "peak"
    out["view"] = view
    out["range"] = r["range"]
    out["peak_event"] = r["peak"]["event"]
    if peak_of_thread(r):
        out["thread_peak"] = {"bytes": r["peak_live_bytes"], "count": r["peak_live_count"],
                              "event": r["live_peak"]["event"]}
    out["stacks_recorded"] = r["stacks_recorded"]
    out["stacks"] = stacks_json(r, sort)
    out["by_function_inclusive"] = rows(r, sort, "functions")
    out["peak_by_python_site"] = by_line(r, "peak")
    clock = r.get("clock")
    out["time"] = {"events": r["events"], "peak_event": r["peak"]["event"],
                   "peak_bytes": r["peak"]["bytes"],
                   "heap": [{"event": e, "bytes": b, **({"seconds": round(t, 6)} if clock else {})}
                            for e, b, t, _ in r["points"]],
                   "rss": ([{"event": e, "seconds": round(t, 6), "bytes": rss}
                            for e, _, t, rss in r["points"] if rss] if clock else None)}
    if clock:
        out["time"].update({"peak_seconds": round(clock["peak_s"], 6),
                            "end_seconds": round(clock["end_s"], 6),
                            "rss_peak_bytes": clock["rss_peak"],
                            "rss_peak_seconds": round(clock["rss_peak_s"], 6)})
    out["summary"] = {"sizes": size_classes(r), "allocators": r["kinds"],
                      "threads": r["threads"]}
    return out


def format_view(r: Dict[str, Any], view: str, top: int, depth: int) -> str:
    b, c = MEASURES[view]
    own = thread_peak(r)
    what = {"peak": "live at the thread's high-water mark" if own
            else "live at the high-water mark", "leaks": "still live at the end",
            "all": "allocated"}[view]
    lines = [""]
    if view == "peak" and own:
        lines.append(f"High-water mark of the process: {r['peak']['bytes']:,} bytes "
                     f"({fmt_bytes(r['peak']['bytes'])}) after event {r['peak']['event']:,}; "
                     f"{own}, by stack below.")
    elif view == "peak":
        lines.append(f"High-water mark: {r['peak']['bytes']:,} bytes "
                     f"({fmt_bytes(r['peak']['bytes'])}) after event {r['peak']['event']:,};"
                     f" {r['peak_live_bytes']:,} of them in {r['peak_live_count']:,} blocks "
                     "made in the range, by stack below.")
    elif view == "leaks":
        lines.append(f"Still live at the end: {r['leaked_bytes']:,} bytes "
                     f"({fmt_bytes(r['leaked_bytes'])}) in {r['leaked_count']:,} blocks.")
    else:
        lines.append(f"Allocated: {r['allocated_bytes']:,} bytes "
                     f"({fmt_bytes(r['allocated_bytes'])}) in {r['allocated_count']:,} "
                     "allocations.")
    stacks = rows(r, view)
    nst = max(1, top // 2)
    lines.append("")
    lines.append(f"Top {min(nst, len(stacks))} of {len(stacks):,} stacks by bytes {what} "
                 "(innermost frame first):")
    for i, s in enumerate(stacks[:nst], 1):
        lines.append(f"  #{i} {s[b]:,} bytes ({fmt_bytes(s[b])}) in {s[c]:,} blocks"
                     + ("" if len(r["threads"]) < 2 else f", thread {thread_name(r, s['thread'])}"))
        frames = frames_of(r, s["frame"])
        for f in frames[:depth]:
            lines.append(f"      {frame_label(*f)}")
        if len(frames) > depth:
            lines.append(f"      ... {len(frames) - depth} more frames (--depth)")
    if not stacks:
        lines.append("  (none)")
    funcs = rows(r, view, "functions")
    self_key = "self_" + b
    lines.append("")
    lines.append(f"Top {top} functions by bytes {what}, inclusive (they and their callees):")
    lines.append(f"  {'inclusive':>14} {'self':>14} {'blocks':>9}  function")
    for f in funcs[:top]:
        lines.append(f"  {f[b]:>14,} {f[self_key]:>14,} {f[c]:>9,}  "
                     f"{f['function']}" + (f" ({short_file(f['file'])})" if f["file"] else ""))
    sites = by_line(r, view)
    lines.append("")
    lines.append(f"Top {top} allocating lines by bytes {what}:")
    lines.append(f"  {'bytes':>14} {'blocks':>9}  line")
    for s in sites[:top]:
        lines.append(f"  {s['bytes']:>14,} {s['count']:>9,}  {frame_label(s['function'], s['file'], s['line'])}")
    return "\n".join(lines) + "\n"


def _chart(cols: List[int], height: int, mark: Optional[int]) -> List[str]:
    """Rows of a column chart (the highest value in each column), ^ at `mark`."""
    top = max(cols) or 1
    out = []
    for row in range(height, 0, -1):
        level = top * row / height
        label = fmt_bytes(level) if row in (height, height // 2) else ""
        bar = "".join("^" if k == mark and row == height else
                      "#" if v >= level - top / (2 * height) else " " for k, v in enumerate(cols))
        out.append(f"{label:>10} |{bar}")
    out.append(f"{'':>10} +{'-' * len(cols)}")
    return out


def _groups(pts: List[Any], rows: int = 16) -> List[List[Any]]:
    """The samples in `rows` consecutive groups (one per table row)."""
    rows = min(rows, len(pts))
    return [pts[k * len(pts) // rows:(k + 1) * len(pts) // rows] for k in range(rows)]


def _format_time_events(r: Dict[str, Any], width: int, height: int) -> List[str]:
    pts = r["points"]
    lines = ["", "Heap (live malloc-family and mmap bytes) over the events; x: event number "
                 "(this capture carries no clock and no RSS samples: made before format 4)."]
    cols: List[int] = [0] * min(width, len(pts))
    for i, p in enumerate(pts):
        k = i * len(cols) // len(pts)
        cols[k] = max(cols[k], p[1])
    peak_col = min(len(cols) - 1, (r["peak"]["event"] * len(cols)) // max(1, r["events"]))
    lines += _chart(cols, height, peak_col)
    lines.append(f"{'':>10}  0{'':>{max(0, len(cols) - 12)}}{r['events']:>11,}")
    lines.append("")
    lines.append(f"Peak (^): {r['peak']['bytes']:,} bytes ({fmt_bytes(r['peak']['bytes'])}) "
                 f"after event {r['peak']['event']:,} of {r['events']:,}; "
                 f"{r['heap_at_end']:,} bytes live at event {r['range'][1]:,}.")
    lines.append("")
    lines.append(f"  {'event':>12} {'highest heap since the row before':>34}")
    for group in _groups(pts):
        lines.append(f"  {group[-1][0]:>12,} {max(p[1] for p in group):>34,}")
    lines.append("Narrow any view to a stretch with --range START:END (event numbers).")
    return lines


def _format_time_clock(r: Dict[str, Any], width: int, height: int) -> List[str]:
    pts, clock = r["points"], r["clock"]
    end = max(clock["end_s"], pts[-1][2], 1e-9)
    ncol = width
    heap: List[Optional[int]] = [None] * ncol
    rss: List[Optional[int]] = [None] * ncol
    for _, h, t, m in pts:
        k = min(ncol - 1, int(t / end * ncol))
        heap[k] = max(heap[k] or 0, h)
        if m:
            rss[k] = max(rss[k] or 0, m)
    # a column without events (the program was not allocating: asleep, or
    # computing) keeps the value before it
    for series in (heap, rss):
        last = 0
        for k, v in enumerate(series):
            last = last if v is None else v
            series[k] = last
    # the peak's column: where the chart is highest (its samples are by time)
    peak_col = max(range(ncol), key=lambda k: (heap[k] or 0, -k))
    axis = f"{'':>10}  0s{'':>{max(0, ncol - 12)}}{end:>9.2f}s"
    lines = ["", "Heap (live malloc-family and mmap bytes) over time; x: seconds since the "
                 "capture opened."]
    lines += _chart([v or 0 for v in heap], height, peak_col)
    lines.append(axis)
    if any(rss):
        lines += ["", "RSS of the process (read at most every 10 ms while it allocates) "
                      "over the same seconds."]
        lines += _chart([v or 0 for v in rss], max(4, height // 2), None)
        lines.append(axis)
    lines.append("")
    lines.append(f"Peak (^): {r['peak']['bytes']:,} bytes ({fmt_bytes(r['peak']['bytes'])}) "
                 f"at {clock['peak_s']:.3f} s (after event {r['peak']['event']:,} of "
                 f"{r['events']:,}); {r['heap_at_end']:,} bytes live at event "
                 f"{r['range'][1]:,} ({clock['range_s'][1]:.3f} s).")
    if clock["rss_peak"]:
        lines.append(f"Highest RSS read: {clock['rss_peak']:,} bytes "
                     f"({fmt_bytes(clock['rss_peak'])}) at {clock['rss_peak_s']:.3f} s.")
    lines.append("")
    lines.append(f"  {'seconds':>10} {'event':>12} {'highest heap':>16} {'RSS':>16}")
    for group in _groups(pts):
        m = max(p[3] for p in group)
        lines.append(f"  {group[-1][2]:>10.3f} {group[-1][0]:>12,} "
                     f"{max(p[1] for p in group):>16,} {(f'{m:,}' if m else '-'):>16}")
    lines.append("Narrow any view to a stretch with --range START:END (event numbers, "
                 "percentages, or seconds: 2.5s:10s).")
    return lines


def format_time(r: Dict[str, Any], width: int = 64, height: int = 12) -> str:
    """The heap (and RSS, when the capture has a clock) over time, the peak marked."""
    if not r["points"]:
        return "\n".join(["", "Heap over the events: (no events)"]) + "\n"
    if r.get("clock"):
        return "\n".join(_format_time_clock(r, width, height)) + "\n"
    return "\n".join(_format_time_events(r, width, height)) + "\n"


def format_summary(r: Dict[str, Any], cap: Dict[str, Any]) -> str:
    lines = ["", f"Allocations in the range: {r['allocated_count']:,} "
                 f"({r['allocated_bytes']:,} bytes)", "",
             "By allocator:", f"  {'allocator':>10} {'count':>12} {'bytes':>16} {'mean':>10}"]
    for name, k in r["kinds"].items():
        mean = k["bytes"] // k["count"] if k["count"] else 0
        lines.append(f"  {name:>10} {k['count']:>12,} {k['bytes']:>16,} {mean:>10,}")
    lines += ["", "By size:", f"  {'size':>23} {'count':>12} {'bytes':>16}  share of count"]
    total = max(1, r["allocated_count"])
    for s in size_classes(r):
        rng = f"{fmt_bytes(s['from'])} - {fmt_bytes(s['to'])}"
        bar = "#" * max(1, round(40 * s["count"] / total)) if s["count"] else ""
        lines.append(f"  {rng:>23} {s['count']:>12,} {s['bytes']:>16,}  {bar}")
    lines += ["", "Threads:"]
    for i, t in enumerate(r["threads"]):
        lines.append(f"  {thread_name(r, i)}: {t['allocated_count']:,} allocations, "
                     f"{t['allocated_bytes']:,} bytes")
    if cap["largest"]:
        b = cap["largest"][0]
        lines += ["", f"Largest single allocation: {b['size']:,} bytes ({b['kind']}, "
                      f"{'freed' if b['freed'] else 'live at exit'}) at "
                      f"{b['file']}:{b['line']} {b['function']}"]
    return "\n".join(lines) + "\n"
