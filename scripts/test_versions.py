"""Run the pytest suite on every supported CPython found on this machine.

`make test-versions` (and so `.ci/run`) calls this after the C unit tests.
For each interpreter it finds (pyenv's CPython 3.9 to 3.13 under
$PYENV_ROOT/versions, and Debian's /usr/bin/python3.11, which has USDT
probes) it keeps a venv of its own (.venv-TAG), builds the checkout into it
with its own meson build directory (build/meson-TAG) and runs the whole
pytest suite.  A version that is present and fails (venv, requirements,
build or tests) fails the run; one that is absent is named as skipped.  A
line of requirements-dev.txt that does not install on some version is named
in the summary (the tests needing it skip there with a reason).

The logs are in build/versions/TAG.log.  Usage:

    python3 scripts/test_versions.py [--jobs N] [--only TAG,TAG] [-- PYTEST_ARGS]
"""

import argparse
import concurrent.futures
import glob
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGDIR = os.path.join(ROOT, "build", "versions")
SUPPORTED = ("3.9", "3.10", "3.11", "3.12", "3.13")
PYTEST_TIMEOUT = 30 * 60   # one version's whole suite; a hang must not eat CI's 90 minutes
STEP_TIMEOUT = 20 * 60     # venv, pip, build


def candidates():
    """(tag, path to the interpreter or None when absent, note) for each version to test."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    out = []
    for minor in SUPPORTED:
        found = []
        for exe in glob.glob(os.path.join(root, "versions", minor + ".*", "bin", "python" + minor)):
            name = os.path.basename(os.path.dirname(os.path.dirname(exe)))
            if re.fullmatch(r"\d+\.\d+\.\d+", name):   # not 3.13.0t (free-threaded) or -dev builds
                found.append((tuple(map(int, name.split("."))), exe))
        out.append((minor, max(found)[1] if found else None, "pyenv"))
    out.append(("debian-3.11", "/usr/bin/python3.11" if os.path.exists("/usr/bin/python3.11") else None,
                "Debian, USDT"))
    return out


def default_sigint():
    """SIGINT back to its default for the suite: a shell starts background jobs with it
    ignored, and the Ctrl-C tests (and the children they signal) need it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run:
    def __init__(self, tag, python, note):
        self.tag, self.python, self.note = tag, python, note
        self.venv = os.path.join(ROOT, ".venv-" + tag)
        self.vpy = os.path.join(self.venv, "bin", "python")
        self.log = os.path.join(LOGDIR, tag + ".log")
        self.junit = os.path.join(LOGDIR, tag + ".xml")
        self.version = ""
        self.result = "skipped"
        self.counts = {}
        self.missing_reqs = []
        self.seconds = 0.0

    def sh(self, argv, step, cwd=ROOT, timeout=STEP_TIMEOUT, check=True):
        with open(self.log, "a") as log:
            log.write("$ " + " ".join(argv) + "\n")
            log.flush()
            try:
                rc = subprocess.run(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, timeout=timeout,
                                    preexec_fn=default_sigint).returncode
            except subprocess.TimeoutExpired:
                log.write("timed out after %d s\n" % timeout)
                rc = -1
        if check and rc != 0:
            raise StepFailed(step)
        return rc

    def venv_ok(self):
        """True when .venv-TAG exists and runs the same interpreter version."""
        if not os.path.exists(self.vpy):
            return False
        try:
            got = subprocess.run([self.vpy, "-c", "import sys; print(sys.version)"],
                                 capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired):
            return False
        return got.strip() == self.version

    def requirements(self):
        """Install requirements-dev.txt; a line that will not install is recorded, not fatal."""
        req = os.path.join(ROOT, "requirements-dev.txt")
        stamp = os.path.join(self.venv, ".deps")
        if os.path.exists(stamp) and os.path.getmtime(stamp) >= os.path.getmtime(req):
            with open(stamp) as f:
                self.missing_reqs = f.read().split()
            return
        pip = [self.vpy, "-m", "pip", "install", "-q"]
        self.sh(pip + ["--upgrade", "pip"], "pip upgrade")   # old venvs' pip has no -C (config settings)
        if self.sh(pip + ["-r", req], "requirements", check=False) != 0:
            with open(req) as f:
                lines = [ln.split("#")[0].strip() for ln in f]
            for line in filter(None, lines):
                if self.sh(pip + [line], "requirements", check=False) != 0:
                    self.missing_reqs.append(line)
        with open(stamp, "w") as f:
            f.write("\n".join(self.missing_reqs))

    def run(self, pytest_args):
        start = time.monotonic()
        open(self.log, "w").close()
        for f in (self.junit,):
            if os.path.exists(f):
                os.unlink(f)
        try:
            self.version = subprocess.run([self.python, "-c", "import sys; print(sys.version)"],
                                          capture_output=True, text=True, timeout=60).stdout.strip()
            if not self.venv_ok():
                self.sh([self.python, "-m", "venv", "--clear", self.venv], "venv")
            self.requirements()
            self.sh([self.vpy, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
                     "-Cbuild-dir=build/meson-" + self.tag, "."], "build")
            rc = self.sh([self.vpy, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider",
                          "--continue-on-collection-errors",
                          "--junitxml=" + self.junit] + pytest_args, "pytest",
                         cwd=os.path.join(ROOT, "tests"), timeout=PYTEST_TIMEOUT, check=False)
            self.counts = junit_counts(self.junit)
            self.result = "PASS" if rc == 0 else "FAIL (pytest exit %d: see the log)" % rc
        except StepFailed as e:
            self.result = "FAIL (%s failed: see %s)" % (e, os.path.relpath(self.log, ROOT))
        self.seconds = time.monotonic() - start
        return self

    @property
    def ok(self):
        return self.result == "PASS"


class StepFailed(Exception):
    pass


def junit_counts(path):
    """passed/failed/errors/skipped from pytest's JUnit XML ({} when there is none)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    suites = [root] if root.tag == "testsuite" else list(root)
    c = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    c["passed"] = c["tests"] - c["failures"] - c["errors"] - c["skipped"]
    return c


def tail(path, n):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-n:])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("VERSIONS_JOBS", "1")),
                    help="versions built and tested at once (default 1)")
    ap.add_argument("--only", default=os.environ.get("VERSIONS", ""),
                    help="comma-separated tags to run (3.9,...,3.13,debian-3.11); default all")
    ap.add_argument("pytest_args", nargs="*")
    a = ap.parse_args(argv)
    os.makedirs(LOGDIR, exist_ok=True)
    only = set(filter(None, a.only.split(",")))
    known = [c[0] for c in candidates()]
    if only - set(known):
        ap.error("unknown version %s (known: %s)" % (", ".join(sorted(only - set(known))), ",".join(known)))
    runs = [Run(*c) for c in candidates() if not only or c[0] in only]
    present = [r for r in runs if r.python]
    for r in runs:
        if not r.python:
            r.result = "skipped (not installed)"
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max(1, a.jobs)) as pool:
        futs = [pool.submit(r.run, a.pytest_args) for r in present]
        for fut in concurrent.futures.as_completed(futs):
            r = fut.result()
            c = r.counts
            print("== %-12s %-22s %s  %s passed, %s failed, %s errors, %s skipped  %.0f s  (log: %s)"
                  % (r.tag, r.version.split()[0] if r.version else "?", r.result, c.get("passed", "-"),
                     c.get("failures", "-"), c.get("errors", "-"), c.get("skipped", "-"), r.seconds,
                     os.path.relpath(r.log, ROOT)), flush=True)
            if not r.ok:
                print(tail(r.log, 60), flush=True)
    print()
    row = "%-12s %-8s %-44s %-7s %6s %6s %7s %5s  %s"
    print(row % ("version", "python", "interpreter", "result", "passed", "failed", "skipped", "secs",
                 "not installed"))
    for r in runs:
        c = r.counts
        print(row % (r.tag, r.version.split()[0] if r.version else "-", r.python or "absent",
                     ("PASS" if r.ok else "FAIL") if r.python else "skipped", c.get("passed", "-"),
                     (c.get("failures", 0) + c.get("errors", 0)) if c else "-", c.get("skipped", "-"),
                     "%.0f" % r.seconds if r.python else "-", " ".join(r.missing_reqs) or "-"))
        if r.python and not r.ok:
            print("    %s: %s" % (r.tag, r.result))
        elif not r.python:
            print("    %s: skipped, no interpreter found" % r.tag)
    bad = [r for r in present if not r.ok]
    passed = sum(r.counts.get("passed", 0) for r in present)
    failed = sum(r.counts.get("failures", 0) + r.counts.get("errors", 0) for r in present)
    failed += sum(1 for r in bad if not r.counts)   # a version that never reached pytest counts once
    skipped = sum(r.counts.get("skipped", 0) for r in present)
    print("\n%d of %d versions passed in %.0f s%s" % (len(present) - len(bad), len(present),
          time.monotonic() - t0, "; FAILED: " + ", ".join(r.tag for r in bad) if bad else ""))
    print("versions: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if bad or not present else 0


if __name__ == "__main__":
    sys.exit(main())
