"""The text report of a ``pymemtrace malloc`` capture (read by :mod:`pymemtrace.readers.malloc_capture`)."""
from __future__ import annotations

from typing import Any, Dict

from pymemtrace.readers.malloc_capture import checkpoint_note, native_name, python_version

__all__ = ["format_report", "format_header", "format_tables", "fmt_bytes"]


def fmt_bytes(n: float) -> str:
    """n bytes in the largest unit that keeps it at least 1 (1.5 MiB)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _site_name(s: Dict[str, Any]) -> str:
    if s["file"] == "<no Python frame>":
        return "<no Python frame>"
    return f"{s['file']}:{s['line']} {s['function']}"


def format_report(r: Dict[str, Any], path: str, top: int = 20) -> str:
    """The header (process, warnings, totals) and the per-line tables."""
    return format_header(r, path) + format_tables(r, top)


def format_header(r: Dict[str, Any], path: str) -> str:
    lines = []
    lines.append(f"pymemtrace malloc report: {path}")
    lines.append(f"  process {r['pid']} (parent {r['ppid']}), Python {python_version(r['python_hex'])}, "
                 f"{r['events']} events" + (", native callers" if r["native"] else ""))
    for w in r["warnings"]:
        lines.append(f"  warning: {w}")
    lines.append("")
    lines.append(f"Total allocated:  {r['total_bytes']:>15,} bytes in {r['total_count']:,} "
                 f"allocations ({fmt_bytes(r['total_bytes'])})")
    lines.append(f"  malloc family:  {r['malloc_bytes']:>15,} bytes in {r['malloc_count']:,}")
    lines.append(f"  anonymous mmap: {r['mmap_bytes']:>15,} bytes in {r['mmap_count']:,} "
                 "(pymalloc arenas of small Python objects come this way)")
    if r.get("aggregate"):
        lines.insert(2, f"  aggregated capture (totals per stack, no events): {checkpoint_note(r)}")
        lines.append(f"Peak live heap:   {r['peak_bytes']:>15,} bytes ({fmt_bytes(r['peak_bytes'])})")
    else:
        lines.append(f"Peak live heap:   {r['peak_bytes']:>15,} bytes ({fmt_bytes(r['peak_bytes'])}; "
                     f"malloc peak {r['peak_malloc_bytes']:,}, mmap peak {r['peak_mmap_bytes']:,})")
    lines.append(f"Live at exit:     {r['live_bytes']:>15,} bytes in {r['live_count']:,} blocks")
    return "\n".join(lines) + "\n"


def format_tables(r: Dict[str, Any], top: int = 20) -> str:
    lines = []
    lines.append("")
    lines.append(f"Top {top} Python sites by bytes allocated:")
    lines.append(f"  {'bytes':>14} {'count':>9} {'malloc':>14} {'mmap':>12}  site")
    for s in r["by_python_site"][:top]:
        lines.append(f"  {s['bytes']:>14,} {s['count']:>9,} {s['malloc_bytes']:>14,} "
                     f"{s['mmap_bytes']:>12,}  {_site_name(s)}")
    lines.append("")
    lines.append(f"Top {top} Python functions by bytes allocated (all their lines):")
    lines.append(f"  {'bytes':>14} {'count':>9} {'live at exit':>14}  function")
    for f in r["by_python_function"][:top]:
        name = ("<no Python frame>" if f["file"] == "<no Python frame>"
                else f"{f['file']} {f['function']}")
        lines.append(f"  {f['bytes']:>14,} {f['count']:>9,} {f['live_bytes']:>14,}  {name}")
    if r.get("by_native_site") is not None:
        lines.append("")
        lines.append(f"Top {top} native callers by bytes allocated:")
        lines.append(f"  {'bytes':>14} {'count':>9}  caller")
        for n in r["by_native_site"][:top]:
            lines.append(f"  {n['bytes']:>14,} {n['count']:>9,}  {native_name(n)}")
    lines.append("")
    lines.append(f"Leak candidates (still allocated at exit), top {top} sites:")
    lines.append(f"  {'bytes':>14} {'count':>9}  site")
    for s in r["leaks"][:top]:
        lines.append(f"  {s['bytes']:>14,} {s['count']:>9,}  {_site_name(s)}")
    if r.get("native_leaks"):
        lines.append("")
        lines.append(f"Leak candidates by native caller, top {top}:")
        for n in r["native_leaks"][:top]:
            lines.append(f"  {n['bytes']:>14,} {n['count']:>9,}  {native_name(n)}")
    lines.append("")
    if r.get("aggregate"):
        lines.append("Largest single allocations: not kept in an aggregated capture")
        return "\n".join(lines) + "\n"
    lines.append("Largest single allocations:")
    lines.append(f"  {'bytes':>14} {'kind':>8} {'state':>6}  site")
    for b in r["largest"]:
        where = _site_name(b) + (f"  [{b['native']}]" if b.get("native") else "")
        lines.append(f"  {b['size']:>14,} {b['kind']:>8} {'freed' if b['freed'] else 'live':>6}"
                     f"  {where}")
    return "\n".join(lines) + "\n"
