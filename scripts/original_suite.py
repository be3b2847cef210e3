"""Run the original pymemtrace's own test suite, unchanged, against this package.

The tests come from the original's release sdist (version and SHA-256 pinned
below), fetched with pip's ordinary `pip download` into build/original-suite/
(never committed) and reused from there; ORIGINAL=<checkout> uses a checkout's
tests/ instead.  Only tests/ is copied into a fresh run directory, so
`import pymemtrace` finds the installed package (ours).  The tests not run,
each with its reason, are in tests/original_suite/deselect.txt.

`make test-original` and tests/test_original_suite.py call this.  Usage:

    python scripts/original_suite.py [--python PY] [-- PYTEST_ARGS]

Exit status: pytest's; 0 with a "skipped: <reason>" line when the tests
cannot be obtained.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

ORIGINAL_VERSION = "0.6.3"
ORIGINAL_SDIST_SHA256 = "02a18593b02150de3210522c94c3d393c5c6954f701f6bf3a3ebe3831a3d0b23"
ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "original-suite"
DESELECT = ROOT / "tests" / "original_suite" / "deselect.txt"


class Unavailable(Exception):
    """The original's tests cannot be obtained here (the message says why)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_sdist(python: str, into: Path) -> Path:
    # --no-binary for pymemtrace only: pip prepares the sdist's metadata in an
    # isolated build environment, and ":all:" would build that environment's
    # setuptools & co. from their sdists too (minutes, on a cold pip cache).
    cmd = [python, "-m", "pip", "download", f"pymemtrace=={ORIGINAL_VERSION}",
           "--no-deps", "--no-binary", "pymemtrace", "--timeout", "20", "--retries", "1",
           "--disable-pip-version-check", "-d", str(into)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Unavailable(f"pip download pymemtrace=={ORIGINAL_VERSION} did not run: {e}") from e
    sdists = sorted(into.glob(f"pymemtrace-{ORIGINAL_VERSION}.tar.gz"))
    if r.returncode != 0 or not sdists:
        last = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise Unavailable(f"pip download pymemtrace=={ORIGINAL_VERSION} --no-binary pymemtrace "
                          f"failed (exit {r.returncode}): {last}")
    digest = _sha256(sdists[0])
    if digest != ORIGINAL_SDIST_SHA256:
        raise Unavailable(f"{sdists[0].name} has SHA-256 {digest}, "
                          f"not the pinned {ORIGINAL_SDIST_SHA256}")
    return sdists[0]


def _extract_tests(sdist: Path, dest: Path) -> None:
    prefix = f"pymemtrace-{ORIGINAL_VERSION}/tests/"
    with tarfile.open(sdist, "r:gz") as tar:
        for m in tar.getmembers():
            if not m.name.startswith(prefix) or ".." in Path(m.name).parts:
                continue
            if not (m.isfile() or m.isdir()):
                continue
            target = dest / "tests" / m.name[len(prefix):]
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            with src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)


def obtain_tests(python: str = sys.executable) -> Path:
    """The directory holding the original's tests/ (downloaded once, then cached)."""
    checkout = os.environ.get("ORIGINAL")
    if checkout:
        if not (Path(checkout) / "tests").is_dir():
            raise Unavailable(f"ORIGINAL={checkout} has no tests/ directory")
        return Path(checkout)
    done = CACHE / f"tests-{ORIGINAL_VERSION}"
    if (done / "tests").is_dir():
        return done
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)       # concurrent runs (test-versions) download once
        if (done / "tests").is_dir():
            return done
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            sdist = _download_sdist(python, Path(tmp) / "dl")
            staged = Path(tmp) / "tests"
            _extract_tests(sdist, staged)
            if not (staged / "tests").is_dir():
                raise Unavailable(f"{sdist.name} holds no tests/ directory")
            staged.rename(done)
    return done


def pytest_selection(python: str) -> List[str]:
    """--ignore/--deselect arguments from deselect.txt."""
    args: List[str] = []
    for line in DESELECT.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        args += ["--ignore", entry] if entry.endswith(".py") else ["--deselect", entry]
    return args


def run(python: str, pytest_args: List[str], run_dir: Optional[Path] = None) -> Tuple[int, str]:
    """Run the suite under `python` in a fresh directory; (exit status, output)."""
    if os.sep in python:
        python = os.path.abspath(python)    # it runs in another directory (no symlink resolving: venvs)
    source = obtain_tests(python)
    own_dir = run_dir is None
    base = Path(tempfile.mkdtemp(prefix="run-", dir=CACHE)) if own_dir else Path(run_dir)  # type: ignore[arg-type]
    if (base / "tests").exists():
        shutil.rmtree(base / "tests")
    shutil.copytree(source / "tests", base / "tests")
    (base / "pytest.ini").write_text("[pytest]\n")   # rootdir here, none of our settings
    cmd = [python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
           "--continue-on-collection-errors", *pytest_selection(python), *pytest_args, "tests"]
    r = subprocess.run(cmd, cwd=base, capture_output=True, text=True)
    if own_dir and r.returncode == 0:
        shutil.rmtree(base, ignore_errors=True)   # the logs its tests write into the cwd
    return r.returncode, r.stdout + r.stderr


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: List[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python", default=sys.executable, help="interpreter with this package installed")
    a = p.parse_args(argv)
    try:
        status, output = run(a.python, extra)
    except Unavailable as e:
        print(f"test-original: skipped: {e}")
        return 0
    print(output, end="")
    return status


if __name__ == "__main__":
    sys.exit(main())
