"""Read a capture of ``pymemtrace malloc`` (aggregated in C by ``_malloccap``) into plain dicts."""
from __future__ import annotations

import errno
import os
import struct
from typing import Any, Dict, List, Optional

__all__ = ["load", "FRAMES_READ", "native_name", "python_version", "capture_header",
           "stop_reason", "checkpoint_note", "FLAG_AGGREGATE"]

# The fixed header of a capture (src/core/capture_format.h, format version 3):
# how the capture ended, read without the events (capture_header).
_HEADER = struct.Struct("<8sIIIIIIQIIIIQIIQQQII")
_HEADER_SIZE = 128


def capture_header(path: str) -> Optional[Dict[str, int]]:
    """The end fields of the capture at `path`'s header, or None if it has none."""
    try:
        with open(path, "rb") as f:
            data = f.read(_HEADER_SIZE)
    except OSError:
        return None
    if len(data) < _HEADER.size or data[:8] != b"PMTMALC\0":
        return None
    v = _HEADER.unpack_from(data)
    return {"version": v[1], "flags": v[4], "state": v[14], "events": v[15], "dropped": v[16],
            "stop_events": v[17], "stop_errno": v[18], "aggregate": bool(v[4] & FLAG_AGGREGATE)}


FLAG_AGGREGATE = 8      # PMT_MC_FLAG_AGGREGATE: totals per stack in checkpoints, no events


def stop_reason(err: int) -> str:
    """Why a capture stopped, in words (errno ``err``)."""
    if err in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk was full ({os.strerror(err)})"
    if not 0 <= err < 1 << 31:      # a damaged header: os.strerror would raise
        return f"unknown error {err}"
    return os.strerror(err)


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
    if r["stop_errno"] and r["aggregate"]:
        out.append(f"checkpoints stopped at event {r['stop_events']:,} because "
                   f"{stop_reason(r['stop_errno'])}: this is the last one written "
                   f"({checkpoint_note(r)}); what the program did after it is missing")
    elif r["stop_errno"]:
        out.append(f"the capture stopped at event {r['stop_events']:,} because "
                   f"{stop_reason(r['stop_errno'])}; {r['dropped']:,} later events were not "
                   "recorded, so 'live at exit' counts blocks whose release is missing")
    if r["aggregate"]:
        if r["checkpoint_older"]:
            out.append(f"the last checkpoint is damaged: this is the one before it "
                       f"(checkpoint {r['checkpoint']:,})")
        if not r["checkpoint_final"] and not r["stop_errno"]:
            out.append(f"the program was killed or crashed: this is its last checkpoint "
                       f"({checkpoint_note(r)}); what it did after that is missing, and "
                       "'live at exit' is what was live at that checkpoint")
    elif not r["complete"]:
        out.append("the capture has no end: the program crashed or was killed; what it "
                   "recorded until then is here, and 'live at exit' is what was live when "
                   "it died")
    if r["ended_by_exec"]:
        out.append("this process then called exec: the program it became wrote its own "
                   "capture (see the list 'pymemtrace malloc' printed)")
    if r["trailing_bytes"]:
        out.append(f"{r['trailing_bytes']} bytes of records could not be read (cut short "
                   "or corrupt); everything else was read")
    if r["dropped"] and not r["stop_errno"]:
        out.append(f"the tracer could not record {r['dropped']} events")
    if r["python_status"] == "mismatch":
        out.append(f"Python frames not available: the tracer does not read the frames of "
                   f"Python {python_version(r['python_hex'])} ({_unread_why(r['python_hex'])}); "
                   "allocations are recorded without them")
    elif r["python_status"] == "none":
        out.append("no Python interpreter in the traced process: no Python attribution")
    return out


def checkpoint_note(r: Dict[str, Any]) -> str:
    """Which checkpoint an aggregated capture's numbers come from, in words."""
    after = max(0, r["checkpoint_ns"] - r["start_ns"]) / 1e9
    which = "the final checkpoint" if r["checkpoint_final"] else "checkpoint"
    return f"{which} (#{r['checkpoint']:,}), {after:.1f} s after the start"


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
