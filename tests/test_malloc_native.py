"""pymemtrace malloc --native: native stacks with the Python frames interleaved (issue 12).

Every allocation of a --native capture carries its native stack (unwound in
the preload library), with the Python frames put where the interpreter's
evaluation function ran them, and the thread at its root; `report --native`
symbolises the stacks and lists them by bytes.  A test library built here
allocates from a named C function called through ctypes by a named Python
function: both must show up, in that order, on every CPython read.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from malloc_e2e import line_of, skip_under_asan
from test_malloc_pyversions import interpreters

pytestmark = skip_under_asan()

LIB_C = """\
#include <stdlib.h>
#include <string.h>
__attribute__((noinline)) void *pmt_test_native_alloc(size_t n)
{
    void *p = malloc(n);
    if (p) {
        memset(p, 1, n);
    }
    return p;
}
"""

SCRIPT = """\
    import ctypes, sys, threading
    lib = ctypes.CDLL(sys.argv[1])
    lib.pmt_test_native_alloc.restype = ctypes.c_void_p
    lib.pmt_test_native_alloc.argtypes = [ctypes.c_size_t]

    def caller(n):
        return lib.pmt_test_native_alloc(n)  # CALL

    def outer():
        return caller(7_000_003)  # OUTER

    keep = outer()  # MODULE
    t = threading.Thread(target=caller, args=(5_000_011,))
    t.start()
    t.join()
    """


@pytest.fixture(scope="module")
def testlib(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler to build the test library")
    d = tmp_path_factory.mktemp("nativelib")
    (d / "lib.c").write_text(LIB_C)
    so = d / "libpmtnative.so"
    subprocess.run([cc, "-O1", "-g", "-shared", "-fPIC", "-o", str(so), str(d / "lib.c")],
                   check=True, capture_output=True, text=True)
    return so


def trace(python, tmp_path, testlib, *extra):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(SCRIPT))
    cap = tmp_path / "app.cap"
    p = subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", "--native", *extra,
                        "-o", str(cap), "--", python, str(script), str(testlib)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return script, cap


def report(cap, *extra):
    p = subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", "report", str(cap),
                        "--native", *extra], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


def stack_of(r, size):
    got = [s for s in r["stacks"] if s["bytes"] == size]
    assert len(got) == 1, [(s["bytes"], s["count"]) for s in r["stacks"]]
    return got[0]


@pytest.mark.parametrize("python", interpreters())
def test_native_function_and_its_python_callers(python, tmp_path, testlib):
    if python is None:
        pytest.skip("that CPython is not installed here")
    script, cap = trace(python, tmp_path, testlib)
    r = json.loads(report(cap, "--json", "--top", "200"))
    assert r["native"] and r["warnings"] == [], r["warnings"]
    s = stack_of(r, 7_000_003)
    assert s["count"] == 1 and s["live_bytes"] == 7_000_003     # never freed
    frames = s["frames"]
    # innermost: the C function that called malloc (the tracer's own frames are not shown)
    assert frames[0]["kind"] == "native" and frames[0]["symbol"] == "pmt_test_native_alloc"
    assert frames[0]["module"] == str(testlib)
    # its Python callers, innermost first, with their lines, outside it
    py = [(f["function"], f["line"]) for f in frames if f["kind"] == "python"]
    assert py == [("caller", line_of(script, "CALL")), ("outer", line_of(script, "OUTER")),
                  ("<module>", line_of(script, "MODULE"))], py
    first_py = next(i for i, f in enumerate(frames) if f["kind"] == "python")
    # between them: the native frames of the ctypes call, symbolised
    between = [f for f in frames[1:first_py]]
    assert between and all(f["kind"] == "native" for f in between)
    assert any(f["symbol"].startswith("ffi_call") for f in between), between
    # and outside the outermost Python frame, the interpreter's start-up in C
    assert any(f["kind"] == "native" and f["symbol"] in ("main", "Py_BytesMain", "pymain_main",
                                                         "Py_RunMain")
               for f in frames[first_py:]), frames[first_py:]
    # the allocating thread: the main thread's id is the process id
    assert s["thread"]["id"] > 0


@pytest.mark.parametrize("python", interpreters()[2:3])
def test_threads_are_told_apart_and_text_report(python, tmp_path, testlib):
    if python is None:
        pytest.skip("that CPython is not installed here")
    script, cap = trace(python, tmp_path, testlib)
    r = json.loads(report(cap, "--json", "--top", "200"))
    main, worker = stack_of(r, 7_000_003), stack_of(r, 5_000_011)
    assert main["thread"]["id"] != worker["thread"]["id"]
    assert worker["live_bytes"] == 5_000_011
    # the worker's stack starts in the thread's entry, not in <module>
    py = [f["function"] for f in worker["frames"] if f["kind"] == "python"]
    assert py[0] == "caller" and "<module>" not in py and "run" in py, py
    # the text view: most bytes first, the C function and its Python caller by name
    text = report(cap, "--top", "3")
    assert "libpmtnative.so!pmt_test_native_alloc" in text
    assert f"app.py:{line_of(script, 'CALL')} caller" in text
    first = text.index("7,000,003 bytes")
    assert first < text.index("5,000,011 bytes")


def test_stacks_capture_and_bad_input(tmp_path, testlib):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(SCRIPT))
    cap = tmp_path / "py.cap"
    p = subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", "--stacks", "-o",
                        str(cap), "--", sys.executable, str(script), str(testlib)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    r = json.loads(report(cap, "--json", "--top", "200"))
    assert not r["native"] and any("--native" in w for w in r["warnings"])
    s = stack_of(r, 7_000_003)
    assert [f["kind"] for f in s["frames"]] == ["python"] * 3
    # not a capture: one clear line, exit 2, no traceback
    bad = tmp_path / "bad.cap"
    bad.write_bytes(b"not a capture at all, just text" * 4)
    p = subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", "report", str(bad),
                        "--native"], capture_output=True, text=True)
    assert p.returncode != 0
    assert "bad magic" in p.stderr and "Traceback" not in p.stderr


def test_killed_program_still_symbolises(tmp_path, testlib):
    """Modules are described when first needed, not at exit: a capture cut
    short by SIGKILL names its native frames (the buffers are written out by
    pausing the tracer first, as a crash-safe writer would have)."""
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent("""\
        import ctypes, os, signal, sys
        from pymemtrace import _malloccap
        lib = ctypes.CDLL(sys.argv[1])
        lib.pmt_test_native_alloc.restype = ctypes.c_void_p
        lib.pmt_test_native_alloc.argtypes = [ctypes.c_size_t]
        keep = lib.pmt_test_native_alloc(3_000_029)
        _malloccap.control(0)      # pause: the buffers reach the file
        os.kill(os.getpid(), signal.SIGKILL)
        """))
    cap = tmp_path / "killed.cap"
    p = subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", "--native", "-o", str(cap),
                        "--", sys.executable, str(script), str(testlib)],
                       capture_output=True, text=True)
    assert p.returncode == 128 + 9, p.stderr
    r = json.loads(report(cap, "--json", "--top", "50"))
    s = stack_of(r, 3_000_029)
    assert s["frames"][0]["symbol"] == "pmt_test_native_alloc"
    assert s["frames"][0]["module"] == str(testlib)
