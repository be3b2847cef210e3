"""`make soak`: CPython's own regression tests under every pymemtrace tool.

Runs each chosen module of the interpreter's test package (`python -m test
MODULE`) untraced and then under each tool:

    malloc        pymemtrace malloc -o CAP -- python -m test MODULE
    process       pymemtrace process -i 0.05 -o LOG -- python -m test MODULE
    profile       cPyMemTrace.Profile around the in-process run (scripts/soak_runner.py)
    trace         cPyMemTrace.Trace around it
    trace_malloc  trace_malloc.TraceMalloc around it

and compares each module's outcome (regrtest's "Tests result" and the test
cases that failed) with the untraced run, then checks that every log or capture
the tool wrote reads back (`pymemtrace malloc report --json`, `pymemtrace
process table`, `pymemtrace trace report`, trace_malloc's result).  Everything
goes to build/soak/MODE/MODULE/; a table ends the run.  Exit status 1 when any
outcome differs or any log does not read back.

    python scripts/soak.py [--python PY] [--modules test_json,...] [--modes malloc,...]
"""

import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "scripts", "soak_runner.py")
MODULES = ("test_json", "test_re", "test_pickle", "test_threading", "test_subprocess", "test_signal",
           "test_mmap", "test_ctypes", "test_os", "test_zlib", "test_sqlite3", "test_gc",
           "test_tracemalloc")
MODES = ("untraced", "malloc", "process", "profile", "trace", "trace_malloc")
TIMEOUT = 30 * 60


def command(py, mode, module, d):
    """(argv, path of the log or capture the tool writes, or None)."""
    junit = os.path.join(d, "junit.xml")
    regr = [module, "--junit-xml", junit]
    if mode == "untraced":
        return [py, "-m", "test"] + regr, None
    if mode == "malloc":
        out = os.path.join(d, "run.cap")
        return [py, "-m", "pymemtrace", "malloc", "-o", out, "--", py, "-m", "test"] + regr, out
    if mode == "process":
        out = os.path.join(d, "run.jsonl")
        return [py, "-m", "pymemtrace", "process", "-i", "0.05", "-o", out, "--",
                py, "-m", "test"] + regr, out
    out = os.path.join(d, "run.json" if mode == "trace_malloc" else "run.log")
    return [py, RUNNER, mode, out, "--"] + regr, out


def outcome(stdout, junit):
    """("SUCCESS" or regrtest's other result, sorted names of the test cases that failed)."""
    m = re.findall(r"^(?:== )?Tests result: ([A-Z ,]+?)(?: ==)?$", stdout, re.M)
    result = m[-1].strip() if m else "NO RESULT LINE"
    failed = set()
    try:
        for case in ET.parse(junit).getroot().iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.add(".".join(filter(None, (case.get("classname"), case.get("name")))))
    except (OSError, ET.ParseError):
        pass
    return result, sorted(failed)


def read_back(py, mode, out, d):
    """(what did not read back or None, a note or None) for the logs or captures a run wrote.

    A child capture without its end record is a note, not a failure: regrtest's own children
    are killed or abort on purpose (Py_FatalError tests), and the report says so."""
    if out is None:
        return None, None
    if mode == "malloc":
        caps = sorted(glob.glob(out + "*"))
        if not caps:
            return "no capture written", None
        problems, cut = [], []
        for cap in caps:
            r = subprocess.run([py, "-m", "pymemtrace", "malloc", "report", "--json", cap], cwd=d,
                               capture_output=True, text=True)
            if r.returncode != 0:
                problems.append("%s: %s" % (os.path.basename(cap), (r.stderr or r.stdout).strip()[-300:]))
            elif not json.loads(r.stdout).get("complete", True):
                (problems if cap == out else cut).append(os.path.basename(cap) + ": no end record")
        note = "%d captures read back; %d children's captures have no end record (%s)" % (
            len(caps), len(cut), ", ".join(cut)) if cut else "%d captures read back" % len(caps)
        return (" | ".join(problems[:5]) if problems else None), note
    if not os.path.exists(out):
        return "%s not written" % os.path.basename(out), None
    if mode == "trace_malloc":
        with open(out) as f:
            res = json.load(f)
        return (None if isinstance(res.get("diff"), int) else "no diff in %s" % res), None
    argv = {"process": ["process", "table"], "profile": ["trace", "report"], "trace": ["trace", "report"]}[mode]
    r = subprocess.run([py, "-m", "pymemtrace"] + argv + [out], cwd=d, capture_output=True, text=True)
    if r.returncode != 0:
        return "%s exit %d: %s" % (" ".join(argv), r.returncode, (r.stderr or r.stdout).strip()[-300:]), None
    return None, None


def default_signals():
    """SIGINT back to its default in the tests' process: a shell starts background jobs with it
    ignored, and test_threading's and test_signal's interrupt tests need it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable, help="interpreter with pymemtrace installed")
    ap.add_argument("--modules", default=",".join(MODULES))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "soak"))
    a = ap.parse_args(argv)
    py = a.python
    a.out = os.path.abspath(a.out)
    probe = subprocess.run([py, "-c", "import sys, test.libregrtest, pymemtrace; print(sys.version.split()[0])"],
                           capture_output=True, text=True, cwd="/")
    if probe.returncode != 0:
        print("soak: skipped: %s cannot import test.libregrtest and pymemtrace (%s)"
              % (py, probe.stderr.strip().splitlines()[-1:]))
        return 0
    version = probe.stdout.strip()
    modes = [m for m in a.modes.split(",") if m]
    if modes[0] != "untraced":
        modes.insert(0, "untraced")
    modules = [m for m in a.modules.split(",") if m]
    results = {}
    t0 = time.monotonic()
    print("soak: CPython %s (%s), %d modules x %d modes, output in %s"
          % (version, py, len(modules), len(modes), os.path.relpath(a.out, ROOT)), flush=True)
    for module in modules:
        for mode in modes:
            d = os.path.join(a.out, mode, module)
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            argv_, out = command(py, mode, module, d)
            start = time.monotonic()
            with open(os.path.join(d, "output.txt"), "w") as log:
                try:
                    rc = subprocess.run(argv_, cwd=d, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, timeout=TIMEOUT,
                                        preexec_fn=default_signals).returncode
                except subprocess.TimeoutExpired:
                    rc = "timeout"
            secs = time.monotonic() - start
            with open(os.path.join(d, "output.txt"), errors="replace") as f:
                res, failed = outcome(f.read(), os.path.join(d, "junit.xml"))
            rb, note = read_back(py, mode, out, d)
            results[module, mode] = dict(rc=rc, result=res, failed=failed, readback=rb, note=note, secs=secs)
            base = results[module, "untraced"]
            same = (rc, res, failed) == (base["rc"], base["result"], base["failed"])
            print("%-16s %-13s exit %-4s %-12s %5.0f s%s%s%s" % (
                module, mode, rc, res, secs, "" if same else "  DIFFERS: failed %s (untraced: %s)"
                % (failed or "none", base["failed"] or "none"), "" if rb is None else "  READ-BACK: " + rb,
                "" if note is None else "  (%s)" % note), flush=True)
    findings = []
    print("\nmodule           " + "".join("%-14s" % m for m in modes))
    for module in modules:
        base = results[module, "untraced"]
        cells = []
        for mode in modes:
            r = results[module, mode]
            same = (r["rc"], r["result"], r["failed"]) == (base["rc"], base["result"], base["failed"])
            cell = ("ok" if r["result"] == "SUCCESS" and r["rc"] == 0 else r["result"].lower()) if same else "DIFFERS"
            if r["readback"] is not None:
                cell += "+LOG"
            cells.append(cell)
            if mode != "untraced" and (not same or r["readback"] is not None):
                findings.append((module, mode, r, base))
        print("%-16s " % module + "".join("%-14s" % c for c in cells))
    print("\n(ok: the same outcome as untraced and SUCCESS; DIFFERS: another result or other failing tests"
          " than untraced; +LOG: a log or capture did not read back)")
    for module, mode, r, base in findings:
        print("- %s under %s: %s, exit %s, failed %s (untraced: %s, exit %s, failed %s)%s" % (
            module, mode, r["result"], r["rc"], r["failed"] or "none", base["result"], base["rc"],
            base["failed"] or "none",
            "" if r["readback"] is None else "; read-back: " + r["readback"]))
    for (module, mode), r in results.items():
        if r.get("note") and "no end record" in r["note"]:
            print("  note: %s under %s: %s" % (module, mode, r["note"]))
    print("soak: %d runs in %.0f s, %d findings" % (len(results), time.monotonic() - t0, len(findings)))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
