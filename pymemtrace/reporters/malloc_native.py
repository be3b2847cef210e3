"""The text of ``pymemtrace malloc report --native``: stacks by bytes allocated.

Prints what :func:`pymemtrace.readers.malloc_native.load_native_stacks` read: each
stack innermost frame first, Python frames as ``file:line function`` (marked
``[py]``), native frames as ``module!symbol``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List


def frame_name(f: Dict[str, Any]) -> str:
    """One line for a frame: ``file:line function`` or ``module!symbol``."""
    if f["kind"] == "python":
        return f"{f['file']}:{f['line']} {f['function']}"
    mod = os.path.basename(f["module"]) or "?"
    if f["symbol"]:
        return f"{mod}!{f['symbol']}"
    return f"{mod}+{f['offset']:#x}" if f["module"] else f"?+{f['address']:#x}"


def format_stacks(r: Dict[str, Any], path: str, top: int) -> str:
    lines: List[str] = [f"pymemtrace malloc report --native: {path}"]
    for w in r["warnings"]:
        lines.append(f"  warning: {w}")
    lines.append(f"Total allocated: {r['total_bytes']:,} bytes in {r['total_count']:,} "
                 f"allocations from {r['distinct_stacks']:,} distinct stacks")
    lines.append("")
    lines.append(f"Top {min(top, len(r['stacks']))} stacks by bytes allocated "
                 "(innermost frame first; [py] marks Python frames):")
    for i, s in enumerate(r["stacks"], 1):
        thread = s["thread"]
        who = (f"thread {thread['id']}" + (f" ({thread['name']})" if thread["name"] else "")
               if thread["id"] else "thread not recorded")
        lines.append(f"#{i} {s['bytes']:,} bytes in {s['count']:,} allocations; "
                     f"{s['live_bytes']:,} bytes in {s['live_count']:,} still live at the end; "
                     f"{who}")
        for f in s["frames"]:
            tag = "[py]" if f["kind"] == "python" else "    "
            lines.append(f"    {tag} {frame_name(f)}")
        if not s["frames"]:
            lines.append("         <no stack recorded>")
        lines.append("")
    return "\n".join(lines)
