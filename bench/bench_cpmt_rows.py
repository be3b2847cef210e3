"""Profile(0) logs: how fast rows are written, how large a million-event log is, and
how long ``pymemtrace trace report`` takes to summarise it.

Builds bench/cpmt_rowbench.c against src/core (cc -O2, as the package is built), which
formats a million rows of a Profile(0)-like stream through the log writer, into
/dev/null and into a file on tmpfs, and measures, for the same bytes, memcpy from
cache, memset and memcpy of a buffer much larger than the last-level cache (DRAM) and
write(2) to a file on tmpfs (CPU time of that process).  Runs it --runs times
(medians), interleaved with the same bench built against src/core of --baseline REV
(git) if given, and counts the instructions of pmt_cpmt_write_row a row under
callgrind (exact, unlike the times on a shared machine).  Then times ``pymemtrace
trace report`` on the log (header, the rows, END line) and on a log of no rows (the
interpreter's start and imports).  Prints one JSON object.

Run: .venv/bin/python bench/bench_cpmt_rows.py [rows] [--runs 5] [--baseline REV]
     (after make install; --no-report skips the trace report part)
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = "      Event dEvent  Clock    What     File    #line Function      RSS           dRSS\n"
CORE_FILES = ("cpmtlog.c", "cpmtfmt.c", "logwriter.c", "procfs.c", "rss.c")
CALLGRIND_ROWS = 100000


def build(tmp, core, name):
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        sys.exit("bench_cpmt_rows: no C compiler (cc)")
    exe = os.path.join(tmp, name)
    subprocess.run([cc, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{core}", "-o", exe,
                    os.path.join(ROOT, "bench", "cpmt_rowbench.c")]
                   + [os.path.join(core, f) for f in CORE_FILES
                      if os.path.exists(os.path.join(core, f))]
                   + ["-lm"], check=True)
    return exe


def baseline_core(tmp, rev):
    """src/core of git revision rev, extracted under tmp."""
    dest = os.path.join(tmp, "baseline")
    os.makedirs(dest)
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "src/core"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return os.path.join(dest, "src", "core")


def instructions_per_row(exe, tmp):
    """Instructions executed inside pmt_cpmt_write_row (callees included) per row."""
    if shutil.which("valgrind") is None:
        return None
    r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                        "--toggle-collect=pmt_cpmt_write_row", exe, str(CALLGRIND_ROWS),
                        "/dev/null", "-"], capture_output=True, text=True, cwd=tmp)
    m = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or not m:
        sys.exit(f"bench_cpmt_rows: callgrind failed: {r.stderr[-500:]}")
    return round(int(m.group(1)) / CALLGRIND_ROWS, 1)


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


def medians(runs):
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", nargs="?", type=int, default=1000000)
    ap.add_argument("--runs", type=int, default=5, help="runs of each build (medians)")
    ap.add_argument("--baseline", metavar="REV", help="also the row writer of git revision REV")
    ap.add_argument("--no-report", action="store_true", help="skip `pymemtrace trace report`")
    args = ap.parse_args()
    result = {"rows": args.rows, "runs": args.runs,
              "load_average_before": [round(x, 1) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmp:
        exes = {"this": build(tmp, os.path.join(ROOT, "src", "core"), "cpmt_rowbench")}
        if args.baseline:
            exes["baseline"] = build(tmp, baseline_core(tmp, args.baseline), "cpmt_rowbench_base")
            result["baseline_rev"] = args.baseline
        runs = {name: [] for name in exes}
        for _ in range(args.runs):
            for name, exe in exes.items():       # interleaved: the same load for both
                out = subprocess.run([exe, str(args.rows)], check=True, capture_output=True,
                                     text=True).stdout
                runs[name].append(json.loads(out))
        for name, exe in exes.items():
            result[name] = medians(runs[name])
            result[name]["write_row_Ir_per_row"] = instructions_per_row(exe, tmp)
        result["load_average_after"] = [round(x, 1) for x in os.getloadavg()]
        if not args.no_report:
            body = os.path.join(tmp, "rows")
            subprocess.run([exes["this"], str(args.rows), body, "-"], check=True,
                           capture_output=True)
            log = os.path.join(tmp, "million.log")
            with open(log, "w") as out, open(body) as src:
                out.write(HEADER)
                shutil.copyfileobj(src, out)
                out.write(f"# END events={args.rows} clock=1.0 rss=9105408 rss_peak=13111296 "
                          "exit=ok\n")
            result["log_bytes"] = os.path.getsize(log)
            empty = os.path.join(tmp, "empty.log")
            with open(empty, "w") as out:
                out.write(HEADER)
            for key, path in (("report", log), ("report_of_no_rows", empty)):
                wall, cpu, maxrss = report(path, tmp)
                result[f"{key}_wall_s"], result[f"{key}_cpu_s"] = wall, cpu
                result[f"{key}_maxrss_MB"] = maxrss
    result["command"] = " ".join([os.path.basename(sys.executable), "bench/bench_cpmt_rows.py"]
                                 + sys.argv[1:])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
