"""pymemtrace malloc inside every CPython, whichever one pymemtrace was built under.

The preload library reads Python frames through per-version layouts
(src/preload/pylayout.h), chosen at run time.  Each layout is checked against
that version's own headers, and each installed interpreter is traced end to
end; an interpreter without a layout (3.8) is traced without Python frames and
the report says so.
"""
import glob
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

from pymemtrace.malloc import LIBRARY
from pymemtrace.readers.malloc_capture import load
from malloc_e2e import line_of, skip_under_asan

needs_preload = skip_under_asan()

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYENV = pathlib.Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
READ = ["3.9", "3.10", "3.11", "3.12", "3.13"]


def pyenv_python(minor):
    """The newest pyenv CPython 3.<minor>, or None."""
    found = sorted(glob.glob(str(PYENV / f"{minor}.*" / "bin" / f"python{minor}")))
    return found[-1] if found else None


def include_dir(python):
    return subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def interpreters():
    out = [pytest.param(pyenv_python(v), id=v) for v in READ]
    out.append(pytest.param("/usr/bin/python3.11" if os.path.exists("/usr/bin/python3.11")
                            else None, id="debian-3.11"))
    return out


@pytest.mark.parametrize("python", interpreters())
def test_layout_table_matches_the_interpreters_headers(python, tmp_path):
    if python is None:
        pytest.skip("that CPython is not installed here")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    inc = include_dir(python)
    if not os.path.exists(os.path.join(inc, "Python.h")):
        pytest.skip(f"no headers for {python} (its -dev package is not installed)")
    exe = tmp_path / "check"
    subprocess.run([cc, "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o", str(exe),
                    str(ROOT / "tests" / "c" / "pylayout_check.c"),
                    "-I", str(ROOT / "src" / "preload"), "-I", inc],
                   check=True, capture_output=True, text=True)
    p = subprocess.run([str(exe)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout
    assert "every field matches" in p.stdout


SCRIPT = """\
    import threading

    def make():
        return bytearray(3_000_017)  # MAKE

    class Box:
        def fill(self):
            return [bytearray(2_000_003) for _ in range(2)]  # COMPREHENSION

    def gen():
        yield bytearray(1_500_007)  # GENERATOR

    def worker(out):
        out.append(bytearray(1_200_011))  # THREAD

    def outer():
        return make()

    keep = [outer(), Box().fill(), list(gen())]
    t = threading.Thread(target=worker, args=(keep,))
    t.start()
    t.join()
    print("done")
    """


def trace_with(python, tmp_path):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(SCRIPT))
    cap = tmp_path / "app.cap"
    p = subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", "-o", str(cap), "--",
                        python, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert (p.returncode, p.stdout) == (0, "done\n"), p.stderr
    return script, cap


@needs_preload
@pytest.mark.parametrize("python", interpreters())
def test_known_allocations_attributed_in_every_python(python, tmp_path):
    if python is None:
        pytest.skip("that CPython is not installed here")
    script, cap = trace_with(python, tmp_path)
    r = load(str(cap))
    assert r["python_status"] == "on" and r["complete"], r["warnings"]
    got = {(b["size"], b["file"], b["line"]): b["function"] for b in r["largest"]}
    # 3.12+ inlines comprehensions (PEP 709): the list belongs to its function
    comp = "<listcomp>" if "3.12" > _minor(python) else "fill"
    expect = {(3_000_018, "MAKE"): "make", (2_000_004, "COMPREHENSION"): comp,
              (1_500_008, "GENERATOR"): "gen", (1_200_012, "THREAD"): "worker"}
    for (size, marker), function in expect.items():
        key = (size, str(script), line_of(script, marker))
        assert got.get(key) == function, (marker, got)
    site = [s for s in r["by_python_site"]
            if (s["file"], s["line"]) == (str(script), line_of(script, "COMPREHENSION"))]
    assert site[0]["malloc_bytes"] == 2 * 2_000_004


def _minor(python):
    return subprocess.run([python, "-c", "import sys; print('%d.%02d' % sys.version_info[:2])"],
                          capture_output=True, text=True, check=True).stdout.strip()


@needs_preload
def test_python_without_a_layout_is_traced_without_frames(tmp_path):
    python = pyenv_python("3.8")
    if python is None:
        pytest.skip("needs CPython 3.8 (a version the tracer has no layout for)")
    script, cap = trace_with(python, tmp_path)
    r = load(str(cap))
    assert r["python_status"] == "mismatch" and r["complete"]
    sizes = {b["size"] for b in r["largest"] if b["file"] == "<no Python frame>"}
    assert {3_000_018, 2_000_004, 1_500_008, 1_200_012} <= sizes
    assert r["by_python_site"] and all(s["file"] == "<no Python frame>"
                                       for s in r["by_python_site"])
    text = subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", "report", str(cap)],
                          capture_output=True, text=True, check=True).stdout
    said = [ln for ln in text.splitlines() if "Python frames not available" in ln]
    assert len(said) == 1 and "Python 3.8." in said[0] and "3.9 to 3.13" in said[0], text
