"""pymemtrace bpftrace, for real: the scripts run with bpftrace against
/usr/bin/python3.11 (which has USDT probes) and bpftrace_workload.py.

They need root, bpftrace and tracefs, and skip saying so otherwise.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from pymemtrace import bpftrace_run as cb
from pymemtrace.readers import bpftrace_log as br

HERE = pathlib.Path(__file__).resolve().parent
WORKLOAD = HERE / "bpftrace_workload.py"
PYTHON = "/usr/bin/python3.11"
SIZE = 123_457
BUFFER_LINE = next(i for i, line in enumerate(WORKLOAD.read_text().splitlines(), 1)
                   if "BUFFER_LINE" in line and "bytearray(SIZE)" in line)
FLOAT_LINE = next(i for i, line in enumerate(WORKLOAD.read_text().splitlines(), 1)
                  if "FLOAT_LINE" in line and "i + 0.5" in line)


def _why_not_live():
    return cb.live_unavailable_reason(PYTHON)


_WHY = _why_not_live()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")

# Under 'make sanitize' the traced python inherits LD_PRELOAD=libasan.so, whose
# malloc replaces libc's: uprobes on libc's malloc then see nothing.
needs_libc_malloc = pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="needs libc's malloc in the traced python (LD_PRELOAD=libasan.so replaces it)")


def _run_cli(*argv, timeout=180):
    return subprocess.run([sys.executable, "-m", "pymemtrace", "bpftrace", *argv],
                          capture_output=True, text=True, timeout=timeout)


def _line_row(rep, function, line):
    rows = [r for r in rep.by_line() if r["function"] == function and r["line"] == line
            and r["file"] == str(WORKLOAD)]
    assert len(rows) == 1, rep.by_line()[:10]
    return rows[0]


@needs_libc_malloc
def test_py_malloc_command_attributes_known_bytes(tmp_path):
    out = tmp_path / "malloc.txt"
    n = 37
    r = _run_cli("run", "py_malloc", "-o", str(out), "--", PYTHON, str(WORKLOAD), str(n))
    assert r.returncode == 0, r.stderr
    rep = br.parse_file(str(out))
    assert rep.complete and rep.script == "py_malloc"
    row = _line_row(rep, "make_buffers", BUFFER_LINE)
    assert row["count"] == n and row["bytes"] == n * (SIZE + 1)
    top = rep.by_function()[0]
    assert (top["function"], top["file"]) == ("make_buffers", str(WORKLOAD))
    # bpftrace -c starts the command only once the probes are attached:
    # the interpreter's start-up, before any Python frame, is seen too.
    assert any(r["function"] == br.NO_FRAME and r["count"] > 50 for r in rep.by_function())
    r = _run_cli("report", str(out), "--json")
    data = json.loads(r.stdout)
    assert data["by_function"][0]["function"] == "make_buffers"
    assert data["by_function"][0]["bytes"] >= n * (SIZE + 1)


@needs_libc_malloc
def test_py_malloc_attach_to_running_pid(tmp_path):
    out = tmp_path / "malloc_pid.txt"
    n = 23
    work = subprocess.Popen([PYTHON, str(WORKLOAD), str(n), "--wait"], stdin=subprocess.PIPE,
                            text=True)
    try:
        tracer = subprocess.Popen([sys.executable, "-m", "pymemtrace", "bpftrace", "run",
                                   "py_malloc", "-p", str(work.pid), "-o", str(out)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if out.exists() and f"tracing PID {work.pid}" in out.read_text():
                break
            assert tracer.poll() is None, tracer.communicate()
            time.sleep(0.1)
        else:
            pytest.fail("bpftrace did not start within 120 s")
        work.stdin.write("go\n")
        work.stdin.close()
        assert work.wait(timeout=120) == 0
        # The script stops by itself when the traced process exits.
        _, err = tracer.communicate(timeout=120)
        assert tracer.returncode == 0, err
    finally:
        for p in (work,):
            if p.poll() is None:
                p.kill()
    rep = br.parse_file(str(out))
    assert rep.complete
    row = _line_row(rep, "make_buffers", BUFFER_LINE)
    assert row["count"] == n and row["bytes"] == n * (SIZE + 1)


def test_py_flowinfo_command_shows_the_call_flow(tmp_path):
    out = tmp_path / "flow.txt"
    r = _run_cli("run", "py_flowinfo", "-o", str(out), "--", PYTHON, str(WORKLOAD), "2")
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    calls = [ln for ln in lines if f"({WORKLOAD}:" in ln and " call " in ln]
    names = [ln.split("-> ")[1].split(" (")[0] for ln in calls]
    assert names[-5:] == ["nested", "nested", "nested", "nested", "leaf"]
    depths = [int(ln.split()[3]) for ln in calls[-5:]]
    assert depths == list(range(depths[0], depths[0] + 5))
    rep = br.parse_file(str(out))
    counts = {r["function"]: r["count"] for r in rep.by_function()
              if r["file"] == str(WORKLOAD)}
    assert counts["nested"] == 4 and counts["leaf"] == 1 and counts["make_buffers"] == 1


def test_py_flowinfo_rss_attributes_rss_growth(tmp_path):
    out = tmp_path / "rss.txt"
    n = 60
    r = _run_cli("run", "py_flowinfo_rss", "-o", str(out), "--", PYTHON, str(WORKLOAD), str(n))
    assert r.returncode == 0, r.stderr
    rep = br.parse_file(str(out))
    assert rep.complete and rep.primary()[0] == "rss"
    row = next(r for r in rep.by_function() if r["function"] == "make_buffers")
    # n buffers of SIZE bytes, all kept until make_buffers returns: RSS grows
    # by about n * SIZE while it runs (pages are touched as they are zeroed).
    assert row["bytes"] >= 0.8 * n * SIZE


@needs_libc_malloc
def test_py_flow_malloc_free_pairs_frees_with_mallocs(tmp_path):
    out = tmp_path / "fmf.txt"
    n = 11
    r = _run_cli("run", "py_flow_malloc_free", "-o", str(out), "--", PYTHON, str(WORKLOAD),
                 str(n))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    mallocs = [ln for ln in text.splitlines() if " malloc " in ln and f" {SIZE + 1} -> 0x" in ln]
    frees = [ln for ln in text.splitlines() if " free " in ln and f" {SIZE + 1} <- 0x" in ln]
    assert len(mallocs) == n and len(frees) == n
    rep = br.parse(text)
    row = _line_row(rep, "make_buffers", BUFFER_LINE)
    assert row["count"] == n and row["bytes"] == n * (SIZE + 1)


def test_py_object_sees_float_objects(tmp_path):
    out = tmp_path / "obj.txt"
    r = _run_cli("run", "py_object", "-o", str(out), "--", PYTHON, str(WORKLOAD), "3")
    assert r.returncode == 0, r.stderr
    rep = br.parse_file(str(out))
    row = _line_row(rep, "make_floats", FLOAT_LINE)
    assert 900 <= row["count"] <= 1000 and row["bytes"] == 24 * row["count"]


def test_traced_command_output_goes_to_the_terminal_not_the_file(tmp_path):
    out = tmp_path / "m.txt"
    r = _run_cli("run", "py_malloc", "-o", str(out), "--", PYTHON, "-c", "print(424242)")
    assert r.returncode == 0, r.stderr
    assert "424242" in r.stdout
    assert "424242" not in out.read_text() and br.parse_file(str(out)).complete


def test_run_default_output_name_is_never_overwritten(tmp_path):
    cmd = [sys.executable, "-m", "pymemtrace", "bpftrace", "run", "py_malloc", "--",
           PYTHON, "-c", "pass"]
    for _ in range(2):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    outs = sorted(tmp_path.glob("py_malloc_*.txt"))
    assert len(outs) == 2
    for p in outs:
        assert br.parse_file(str(p)).complete


THREADS = """\
import threading

def alloc_a():
    keep = []
    for _ in range(20):
        keep.append(bytearray(111111))

def alloc_b():
    keep = []
    for _ in range(30):
        keep.append(bytearray(222222))

threads = [threading.Thread(target=f) for f in (alloc_a, alloc_b) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


@needs_libc_malloc
def test_py_malloc_threads_are_attributed_to_their_own_functions(tmp_path):
    script = tmp_path / "threads.py"
    script.write_text(THREADS)
    out = tmp_path / "threads.txt"
    r = _run_cli("run", "py_malloc", "-o", str(out), "--", PYTHON, str(script))
    assert r.returncode == 0, r.stderr
    rep = br.parse_file(str(out))
    rows = {r["function"]: r for r in rep.by_line() if r["file"] == str(script)
            and r["line"] in (6, 11)}
    assert rows["alloc_a"]["count"] == 40 and rows["alloc_a"]["bytes"] == 40 * 111112
    assert rows["alloc_b"]["count"] == 60 and rows["alloc_b"]["bytes"] == 60 * 222223


@needs_libc_malloc
def test_ctrl_c_saves_what_was_traced(tmp_path):
    """SIGINT to the command's process group (what Ctrl-C does) ends tracing
    with the maps printed and saved, while the traced process runs on."""
    out = tmp_path / "sigint.txt"
    n = 4
    work = subprocess.Popen([PYTHON, str(WORKLOAD), str(n), "--wait", "--repeat", "1000000000"],
                            stdin=subprocess.PIPE, text=True)
    try:
        tracer = subprocess.Popen([sys.executable, "-m", "pymemtrace", "bpftrace", "run",
                                   "py_malloc", "-p", str(work.pid), "-o", str(out)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
        deadline = time.monotonic() + 120
        while not (out.exists() and f"tracing PID {work.pid}" in out.read_text()):
            assert time.monotonic() < deadline, "bpftrace did not start within 120 s"
            assert tracer.poll() is None, tracer.communicate()
            time.sleep(0.1)
        work.stdin.write("go\n")
        work.stdin.flush()
        time.sleep(1.0)     # let it allocate a while; nothing below depends on how long
        os.killpg(tracer.pid, signal.SIGINT)
        _, err = tracer.communicate(timeout=120)
        assert tracer.returncode == 0, err
        assert work.poll() is None          # the traced program was not disturbed
    finally:
        if work.poll() is None:
            work.kill()
        work.wait()
    rep = br.parse_file(str(out))
    assert rep.complete
    row = _line_row(rep, "make_buffers", BUFFER_LINE)
    assert row["count"] >= 1
    assert row["bytes"] == row["count"] * (SIZE + 1)


@needs_libc_malloc
def test_command_in_a_venv_keeps_its_venv(tmp_path):
    # The command runs as given (not as the symlink's target), so a venv's
    # python still finds its pyvenv.cfg.
    venv = tmp_path / "venv"
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    script = tmp_path / "v.py"
    script.write_text("import sys\n"
                      "def f():\n"
                      "    return bytearray(123457)\n"
                      "f()\n"
                      f"open({str(tmp_path / 'prefix.txt')!r}, 'w').write(sys.prefix)\n")
    out = tmp_path / "v.txt"
    r = _run_cli("run", "py_malloc", "-o", str(out), "--", str(venv / "bin" / "python"),
                 str(script))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "prefix.txt").read_text() == str(venv)
    rows = [x for x in br.parse_file(str(out)).by_line() if x["file"] == str(script)
            and x["function"] == "f" and x["line"] == 3]
    assert rows and rows[0]["count"] == 1 and rows[0]["bytes"] == SIZE + 1
