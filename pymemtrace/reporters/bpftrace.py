"""The text report of a bpftrace script's output (read by :mod:`pymemtrace.readers.bpftrace_log`)."""
from __future__ import annotations

from typing import List

from pymemtrace.readers.bpftrace_log import Report

__all__ = ["format_report"]

_EVENTS_NOUN = {"alloc": "calls", "object": "calls", "rss": "increases"}


def _place(r: dict) -> str:
    if not r["file"]:
        return "-"
    return f"{r['file']}:{r['line']}"


def format_report(rep: Report, limit: int = 20) -> str:
    """The text report: totals, then by function, by file and by line, sorted by bytes."""
    name, what = rep.primary()
    total_bytes, total_count = rep.totals()
    out = []
    state = "complete" if rep.complete else "INCOMPLETE"
    out.append(f"pymemtrace bpftrace report: {rep.script or 'unknown script'} ({state})")
    if name is None:
        out.append(f"Measure: calls (from {rep.events} flow events); "
                   f"{total_count:,d} calls of {len(rep.calls):,d} functions")
    else:
        noun = _EVENTS_NOUN.get(name, "events")
        out.append(f"Measure: {what}; total {total_bytes:,d} bytes in {total_count:,d} {noun}")
    for w in rep.warnings:
        out.append(f"Warning: {w}")

    def table(title: str, rows: List[dict], with_func: bool) -> None:
        out.append("")
        shown = rows if limit <= 0 else rows[:limit]
        more = "" if len(shown) == len(rows) else f" (top {len(shown)} of {len(rows)})"
        out.append(f"{title}{more}:")
        if name is None:
            out.append(f"{'calls':>9}  {'function':<30} file:line" if with_func
                       else f"{'calls':>9}  file")
            for r in shown:
                out.append(f"{r['count']:>9,d}  {r['function']:<30} {_place(r)}" if with_func
                           else f"{r['count']:>9,d}  {r['file'] or '-'}")
        elif with_func:
            out.append(f"{'bytes':>14} {'count':>9}  {'function':<30} file:line")
            for r in shown:
                out.append(f"{r['bytes']:>14,d} {r['count']:>9,d}  {r['function']:<30} {_place(r)}")
        else:
            out.append(f"{'bytes':>14} {'count':>9}  file")
            for r in shown:
                out.append(f"{r['bytes']:>14,d} {r['count']:>9,d}  {r['file'] or '-'}")

    order = "calls" if name is None else "bytes"
    table(f"By function, sorted by {order}", rep.by_function(), True)
    table(f"By file, sorted by {order}", rep.by_file(), False)
    if name is not None:
        table("By line running, sorted by bytes", rep.by_line(), True)
        for other in rep.maps():
            if other != name:
                table(f"@{other} by function, sorted by bytes", rep.by_function(other), True)
    return "\n".join(out) + "\n"
