"""Allocations by whole stack from a ``pymemtrace malloc`` capture, symbolised.

Every allocation of a ``--native`` capture carries its native stack with the
Python frames interleaved where the interpreter ran them (``--stacks``
captures: the Python stack alone).  This view charges each allocation to its
whole stack and lists the stacks that allocated the most bytes, innermost
frame first.  The reading, replay and symbolisation are C
(``pymemtrace._mallocstacks`` over ``src/core/native_stacks.c``); this module
only shapes the rows (:mod:`pymemtrace.reporters.malloc_native` prints them).
"""
from __future__ import annotations

from typing import Any, Dict


def load_native_stacks(path: str, top: int) -> Dict[str, Any]:
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
