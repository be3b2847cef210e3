"""``pymemtrace malloc report --native``: allocations by whole stack, symbolised.

Every allocation of a ``--native`` capture carries its native stack with the
Python frames interleaved where the interpreter ran them (``--stacks``
captures: the Python stack alone).  This view charges each allocation to its
whole stack and lists the stacks that allocated the most bytes, innermost
frame first.  The reading, replay and symbolisation are C
(``pymemtrace._mallocstacks`` over ``src/core/native_stacks.c``); this module
only shapes and prints the rows.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List


def load_stacks(path: str, top: int) -> Dict[str, Any]:
    """The `top` stacks of the capture at `path` by bytes allocated.

    Returns a dict with ``stacks`` (each: ``bytes``, ``count``, ``live_bytes``,
    ``live_count``, ``thread`` {``id``, ``name``} and ``frames``, innermost
    first, each ``{"kind": "python", "file", "function", "line"}`` or
    ``{"kind": "native", "module", "symbol", "offset", "address"}``),
    ``distinct_stacks``, ``total_bytes``, ``total_count``, ``native`` and
    ``warnings``.  Raises ValueError if the capture cannot be read.
    """
    from pymemtrace import _mallocstacks

    raw = _mallocstacks.stacks(path, top)
    for s in raw["stacks"]:
        s["thread"] = {"id": s.pop("thread_id"), "name": s.pop("thread_name")}
        s["frames"] = [_frame(f) for f in s["frames"]]
    warnings = []
    if not raw["has_stacks"]:
        warnings.append("this capture has no stacks: record it with 'pymemtrace malloc "
                        "--native' (native and Python frames) or '--stacks' (Python frames)")
    elif not raw["native"]:
        warnings.append("this capture has Python stacks only: record it with --native for "
                        "the native frames")
    if raw["changed_modules"]:
        warnings.append(f"{raw['changed_modules']} loaded file(s) changed since the capture "
                        f"(first: {raw['first_changed_module']}): their frames are shown as "
                        "module+offset")
    raw["warnings"] = warnings
    del raw["first_changed_module"]
    return raw


def _frame(t: tuple) -> Dict[str, Any]:
    if t[0] == "native":
        return {"kind": "native", "module": t[1], "symbol": t[2], "offset": t[3],
                "address": t[4]}
    return {"kind": "python", "file": t[1], "function": t[2], "line": t[3]}


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
