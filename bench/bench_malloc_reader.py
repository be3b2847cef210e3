"""bench: the reporter's memory and time on captures of 1 to 100 million events.

Writes synthetic ``--stacks`` captures (bench/capgen.c, compiled here with
``cc``: 4 threads, 2000 distinct stacks, a window of live blocks per thread
and a slow leak, as the preload library lays them out) of each size, then
runs ``pymemtrace malloc report`` (the default view, peak) on the raw capture
and on it packed, and prints, per capture, the reporter's peak RSS (wait4's
ru_maxrss) and its CPU time (user + system: wall time is noise on a shared
machine) as JSON.

    .venv/bin/python bench/bench_malloc_reader.py [EVENTS ...]   (default 1e6 1e7)

``BENCH_READER_PYTHON`` runs another interpreter's pymemtrace instead (an
older tree's, for a before/after), ``BENCH_READER_VERSION`` writes that
capture format number (3: the format before TIME records, for such a tree),
``BENCH_READER_DIR`` is where the captures go (default /tmp; a capture of
100 million events is about 800 MB raw; each is deleted after).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def build_capgen(where: str) -> str:
    exe = os.path.join(where, "capgen")
    subprocess.run(["cc", "-O2", "-std=gnu11", "-o", exe, os.path.join(HERE, "capgen.c")],
                   check=True)
    return exe


def run_measured(argv: list[str]) -> dict:
    """Run argv to the end: its exit status, CPU seconds and peak RSS."""
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/")
    _, status, ru = os.wait4(p.pid, 0)
    err = p.stderr.read().decode(errors="replace").strip()
    p.stderr.close()
    return {"status": os.waitstatus_to_exitcode(status),
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "maxrss_mb": round(ru.ru_maxrss / 1024, 1),
            **({"error": err[-300:]} if err else {})}


def main() -> int:
    sizes = [int(float(a)) for a in sys.argv[1:]] or [1_000_000, 10_000_000]
    python = os.environ.get("BENCH_READER_PYTHON", sys.executable)
    version = os.environ.get("BENCH_READER_VERSION")
    where = os.environ.get("BENCH_READER_DIR", "/tmp")
    out = {"python": python, "results": []}
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        capgen = build_capgen(tmp)
        for n in sizes:
            cap = os.path.join(tmp, f"gen-{n}.cap")
            subprocess.run([capgen, cap, str(n), "4", "2000"] + ([version] if version else []),
                           check=True, stdout=subprocess.DEVNULL)
            row = {"events": n, "raw_bytes": os.path.getsize(cap)}
            row["raw"] = run_measured([python, "-m", "pymemtrace", "malloc", "report", cap])
            pack = ("import sys; from pymemtrace import _malloccap; "
                    "_malloccap.pack(sys.argv[1], 6)")
            subprocess.run([python, "-c", pack, cap], check=True, cwd="/")
            row["packed_bytes"] = os.path.getsize(cap)
            row["packed"] = run_measured([python, "-m", "pymemtrace", "malloc", "report", cap])
            os.unlink(cap)
            out["results"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
