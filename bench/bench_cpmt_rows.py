"""Profile(0) logs: how fast rows are written, how large a million-event log is, and
how long ``pymemtrace trace report`` takes to summarise it.

Builds bench/cpmt_rowbench.c against src/core (cc, as the C unit tests are built),
which formats a million rows of a Profile(0)-like stream through the log writer
(CPU time, against memcpy of the same bytes), then times ``pymemtrace trace report``
on that log (header, the million rows, END line).  Prints one JSON object.

Run: .venv/bin/python bench/bench_cpmt_rows.py [rows]   (after make install)
"""
import json
import os
import resource
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
                   + [os.path.join(core, f) for f in ("cpmtlog.c", "logwriter.c", "procfs.c", "rss.c")]
                   + ["-lm"], check=True)
    return exe


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
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "pymemtrace", "trace", "report", log], check=True,
                       stdout=subprocess.DEVNULL, cwd=tmp)   # the installed package, not ./
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result["report_wall_s"] = round(time.monotonic() - t0, 2)
        result["report_cpu_s"] = round((after.ru_utime - before.ru_utime)
                                       + (after.ru_stime - before.ru_stime), 2)
        result["report_maxrss_MB"] = round(after.ru_maxrss / 1024)
    result["command"] = f"{os.path.basename(sys.executable)} bench/bench_cpmt_rows.py {rows}"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000000)
