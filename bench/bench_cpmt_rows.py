"""Profile(0) logs: how fast rows are written, how large a million-event log is, and
how long ``pymemtrace trace report`` takes to summarise it.

Builds bench/cpmt_rowbench.c against src/core (cc, as the C unit tests are built),
which formats a million rows of a Profile(0)-like stream through the log writer
(CPU time, against memcpy of the same bytes), then times ``pymemtrace trace report``
on that log (header, the million rows, END line) and on a log of no rows (the
interpreter's start and imports).  Prints one JSON object.

Run: .venv/bin/python bench/bench_cpmt_rows.py [rows]   (after make install)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = "      Event dEvent  Clock    What     File    #line Function      RSS           dRSS\n"


def build(tmp):
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        sys.exit("bench_cpmt_rows: no C compiler (cc)")
    exe = os.path.join(tmp, "cpmt_rowbench")
    core = os.path.join(ROOT, "src", "core")
    subprocess.run([cc, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{core}", "-o", exe,
                    os.path.join(ROOT, "bench", "cpmt_rowbench.c")]
                   + [os.path.join(core, f) for f in ("cpmtlog.c", "cpmtfmt.c", "logwriter.c", "procfs.c", "rss.c")]
                   + ["-lm"], check=True)
    return exe


def report(path, cwd):
    """`pymemtrace trace report PATH`: wall s, CPU s and peak RSS (MB) of that process
    alone (os.wait4: the compiler run before is not counted)."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "pymemtrace", "trace", "report", path],
                            stdout=subprocess.DEVNULL, cwd=cwd)   # the installed package, not ./
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"bench_cpmt_rows: trace report failed ({proc.returncode})")
    return (round(time.monotonic() - t0, 2), round(ru.ru_utime + ru.ru_stime, 2),
            round(ru.ru_maxrss / 1024))


def main(rows):
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(tmp)
        result = json.loads(subprocess.run([exe, str(rows)], check=True, capture_output=True,
                                           text=True).stdout)
        body = os.path.join(tmp, "rows")
        subprocess.run([exe, str(rows), body], check=True, capture_output=True)
        log = os.path.join(tmp, "million.log")
        with open(log, "w") as out, open(body) as src:
            out.write(HEADER)
            shutil.copyfileobj(src, out)
            out.write(f"# END events={rows} clock=1.0 rss=9105408 rss_peak=13111296 exit=ok\n")
        result["log_bytes"] = os.path.getsize(log)
        empty = os.path.join(tmp, "empty.log")
        with open(empty, "w") as out:
            out.write(HEADER)
        for key, path in (("report", log), ("report_of_no_rows", empty)):
            wall, cpu, maxrss = report(path, tmp)
            result[f"{key}_wall_s"], result[f"{key}_cpu_s"] = wall, cpu
            result[f"{key}_maxrss_MB"] = maxrss
    result["command"] = f"{os.path.basename(sys.executable)} bench/bench_cpmt_rows.py {rows}"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000000)
