"""Read a capture of ``pymemtrace malloc`` (aggregated in C by ``_malloccap``) into plain dicts."""
from __future__ import annotations

import os
from typing import Any, Dict, List

__all__ = ["load", "FRAMES_READ", "native_name", "python_version"]


_SITE_FIELDS = ("file", "function", "line", "bytes", "count", "malloc_bytes", "malloc_count",
                "mmap_bytes", "mmap_count", "live_bytes", "live_count")
_NATIVE_FIELDS = ("module", "symbol", "offset", "address", "bytes", "count", "malloc_bytes",
                  "malloc_count", "mmap_bytes", "mmap_count", "live_bytes", "live_count")


def load(path: str) -> Dict[str, Any]:
    """Read and aggregate the capture at `path` (in C) into a dict.

    The dict has the totals (``total_bytes``, ``peak_bytes``, ...), the Python
    sites (``by_python_site``: dicts with file, function, line, bytes, count,
    malloc/mmap splits and what is still live), ``leaks`` (the sites with live
    blocks at the end), ``largest`` allocations and, with --native captures,
    ``by_native_site``.  Raises ValueError if the capture cannot be read.
    """
    from pymemtrace import _malloccap

    raw = _malloccap.read(path)
    sites = [dict(zip(_SITE_FIELDS, s)) for s in raw.pop("py_sites")]
    native = [dict(zip(_NATIVE_FIELDS, s)) for s in raw.pop("native_sites")]
    largest = []
    for size, kind, freed, py_index, nat_index in raw.pop("largest"):
        site = sites[py_index]
        row = {"size": size, "kind": kind, "freed": freed, "file": site["file"],
               "line": site["line"], "function": site["function"]}
        if nat_index is not None:
            n = native[nat_index]
            row["native"] = native_name(n)
        largest.append(row)
    leaks = [
        {"file": s["file"], "line": s["line"], "function": s["function"],
         "bytes": s["live_bytes"], "count": s["live_count"]}
        for s in sites if s["live_count"]
    ]
    leaks.sort(key=lambda s: (-s["bytes"], -s["count"]))
    raw["by_python_site"] = sites
    raw["by_python_function"] = _by_function(sites)
    raw["leaks"] = leaks
    raw["largest"] = largest
    if raw["native"]:
        raw["by_native_site"] = native
        raw["native_leaks"] = sorted(
            ({"module": n["module"], "symbol": n["symbol"], "offset": n["offset"],
              "bytes": n["live_bytes"], "count": n["live_count"]}
             for n in native if n["live_count"]),
            key=lambda s: (-s["bytes"], -s["count"]))
    raw["warnings"] = _warnings(raw)
    return raw


def _by_function(sites: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The per-line sites summed per (file, function): one row per site, not per event."""
    acc: Dict[tuple, Dict[str, Any]] = {}
    for s in sites:
        key = (s["file"], s["function"])
        row = acc.get(key)
        if row is None:
            row = acc[key] = {"file": s["file"], "function": s["function"], "bytes": 0,
                              "count": 0, "malloc_bytes": 0, "mmap_bytes": 0,
                              "live_bytes": 0, "live_count": 0, "lines": 0}
        for k in ("bytes", "count", "malloc_bytes", "mmap_bytes", "live_bytes", "live_count"):
            row[k] += s[k]
        row["lines"] += 1
    return sorted(acc.values(), key=lambda r: (-r["bytes"], -r["count"]))


def native_name(n: Dict[str, Any]) -> str:
    mod = os.path.basename(n["module"]) or "?"
    return f"{mod}!{n['symbol']}" if n["symbol"] else f"{mod}+{n['offset']:#x}"


def _warnings(r: Dict[str, Any]) -> List[str]:
    out = []
    if not r["complete"]:
        out.append("the capture has no end record: the program crashed or was killed, so "
                   "its last buffered events are missing and 'live at exit' over-counts")
    if r["ended_by_exec"]:
        out.append("this process then called exec: the program it became wrote its own "
                   "capture (see the list 'pymemtrace malloc' printed)")
    if r["trailing_bytes"]:
        out.append(f"the capture ends with {r['trailing_bytes']} bytes of a cut-short or "
                   "corrupt record; everything before it was read")
    if r["dropped"]:
        out.append(f"the tracer could not write {r['dropped']} events")
    if r["python_status"] == "mismatch":
        out.append(f"Python frames not available: the tracer does not read the frames of "
                   f"Python {python_version(r['python_hex'])} ({_unread_why(r['python_hex'])}); "
                   "allocations are recorded without them")
    elif r["python_status"] == "none":
        out.append("no Python interpreter in the traced process: no Python attribution")
    return out


# The CPython versions whose frames the preload library reads (src/preload/pylayout.h).
FRAMES_READ = ((3, 9), (3, 10), (3, 11), (3, 12), (3, 13))


def _unread_why(hexversion: int) -> str:
    if (hexversion >> 24, (hexversion >> 16) & 0xff) in FRAMES_READ:
        return "a debug or free-threaded build"
    first, last = FRAMES_READ[0], FRAMES_READ[-1]
    return f"it reads CPython {first[0]}.{first[1]} to {last[0]}.{last[1]}"


def python_version(hexversion: int) -> str:
    if not hexversion:
        return "unknown version"
    return f"{hexversion >> 24}.{(hexversion >> 16) & 0xff}.{(hexversion >> 8) & 0xff}"
