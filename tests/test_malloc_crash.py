"""pymemtrace malloc when things go wrong: SIGKILL, a full disk, a child that
records nothing (issues 12 and 15).

Records go straight into chunks of the capture mapped MAP_SHARED
(src/preload/capfile.c): a program killed at any moment leaves every record it
finished in the capture.  A full disk stops the capture with the event number
and reason in its header, said at the command's exit and in the report; the
program's exit code still passes through.  Only captures that hold something
are written, listed and reported.
"""
import errno
import os
import random
import subprocess
import sys
import textwrap

import pytest

from malloc_capture import KILLABLE, run_and_kill
from malloc_e2e import PY, line_of, skip_under_asan
from pymemtrace.readers.malloc_capture import load

pytestmark = skip_under_asan()


def traced(tmp_path, source, *args, cap=None, **kw):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(source))
    cap = cap or tmp_path / "t.cap"
    cmd = [PY, "-m", "pymemtrace", "malloc", "-o", str(cap), "--", PY, str(script), *args]
    return cmd, cap, str(script)


def count_at(r, script, line):
    return sum(s["malloc_count"] for s in r["by_python_site"]
               if s["file"] == script and s["line"] == line)


# Two threads allocate 100 kB blocks (malloc, not pymalloc), each on its own
# line, and after each one count it (malloc_capture.KILLABLE): what the test
# reads after the kill is what each thread finished.
KILLED = """\
    def work(slot):
        i = 0
        while True:
            if slot:
                b = bytearray(100_004)  # MARK1
            else:
                b = bytearray(100_003)  # MARK0
            i += 1
            done[slot] = i
    threading.Thread(target=work, args=(1,), daemon=True).start()
    started()
    work(0)
    """


@pytest.mark.parametrize("run", range(4))
def test_sigkill_at_a_random_moment_loses_at_most_the_record_being_written(tmp_path, run):
    cap = tmp_path / "t.cap"
    script, rc, err, done = run_and_kill(
        tmp_path, KILLED, [PY, "-m", "pymemtrace", "malloc", "-o", str(cap), "--"],
        random.Random(run).uniform(0.05, 1.0))
    assert rc == 128 + 9, err
    r = load(str(cap))
    assert not r["complete"] and not r["trailing_bytes"] > 64
    got = [count_at(r, str(script), line_of(script, f"MARK{k}")) for k in (0, 1)]
    # every block a thread counted was recorded, and at most one more: made
    # and recorded but not yet counted, or being recorded when it died
    assert sum(done) > 0
    assert all(done[k] <= got[k] <= done[k] + 1 for k in (0, 1)), (got, done)


def test_the_count_is_never_zero_while_it_is_being_stored(tmp_path, monkeypatch):
    """The count run_and_kill reads is stored whole: a kill between two
    instructions of the store leaves the old count or the new one, never 0
    (struct.pack_into zeroes its destination before it converts the value)."""
    monkeypatch.chdir(tmp_path)
    ns = {}
    exec(KILLABLE, ns)
    done = ns["done"]
    done[1] = 39_583
    seen = []

    class Count:
        def __index__(self):
            seen.append(done[1])    # the slot, while the new value is converted
            return 39_584

    done[1] = Count()
    assert (seen, done[1]) == ([39_583], 39_584)


FULL = """\
    import sys
    keep = []
    for i in range(300_000):
        b = bytearray(1000 + i % 3)   # churn: 600,000 events, more than fit
    sys.exit(3)
    """


def mount_tmpfs(where, size):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    where.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {p.stderr.strip()}")


def test_full_disk_says_where_the_capture_stopped(tmp_path):
    small = tmp_path / "small"
    mount_tmpfs(small, "1m")
    try:
        cmd, cap, script = traced(tmp_path, FULL, cap=small / "t.cap")
        p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert p.returncode == 3, p.stderr      # the program's own exit code
        assert "the capture stopped at event" in p.stderr
        assert "because the disk was full" in p.stderr
        r = load(str(cap))
        assert r["complete"] and r["stop_errno"] == errno.ENOSPC
        assert 1000 < r["stop_events"] <= r["events"] < 600_000 and r["dropped"] > 0
        assert any(f"stopped at event {r['stop_events']:,} because the disk was full" in w
                   for w in r["warnings"]), r["warnings"]
        rep = subprocess.run([PY, "-m", "pymemtrace", "malloc", "report", str(cap)],
                             capture_output=True, text=True)
        assert rep.returncode == 0 and "because the disk was full" in rep.stdout
    finally:
        subprocess.run(["umount", str(small)], check=False)


NOTHING = """\
    import ctypes, os
    libc = ctypes.CDLL(None)
    libc.fork.restype = ctypes.c_int
    _exit = libc._exit
    pid = libc.fork()
    if pid == 0:
        _exit(0)              # the child allocates nothing
    os.waitpid(pid, 0)
    pid = os.fork()
    if pid == 0:
        os._exit(0)           # the child runs Python's after-fork code, then exits
    os.waitpid(pid, 0)
    print("ok")
    """


def test_children_list_and_report_only_what_they_wrote(tmp_path):
    cmd, cap, script = traced(tmp_path, NOTHING)
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (p.returncode, p.stdout) == (0, "ok\n"), p.stderr
    files = sorted(tmp_path.glob("t.cap*"))
    assert files and all(f.stat().st_size > 0 for f in files), files
    listed = [line for line in p.stderr.splitlines() if "other processes wrote" in line]
    children = [f for f in files if f != cap]
    if children:
        assert listed and all(str(f) in listed[0] for f in children), p.stderr
    else:
        assert not listed, p.stderr
    for f in files:
        rep = subprocess.run([PY, "-m", "pymemtrace", "malloc", "report", str(f)],
                             capture_output=True, text=True)
        assert rep.returncode == 0, rep.stderr
