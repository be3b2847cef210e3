"""pymemtrace malloc: the capture's descriptor stays out of the traced program's way.

A shell's ``exec 3>file``, a daemon's ``closerange`` followed by ``open``, a
program that puts its own file on the tracer's descriptor number, a child that
lists the descriptors it inherited: the program's files hold exactly what it
wrote, and the capture stays readable.
"""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from pymemtrace.malloc import LIBRARY
from pymemtrace.readers.malloc_capture import load

SANITIZE = os.environ.get("PYMEMTRACE_SANITIZE") == "1"
pytestmark = pytest.mark.skipif(
    SANITIZE, reason="the preload library is not meant to run under ASan's own malloc "
                     "interposition")

PY = sys.executable


def run_traced(tmp_path, *command):
    cap = tmp_path / "t.cap"
    p = subprocess.run([PY, "-m", "pymemtrace", "malloc", "-o", str(cap), "--", *command],
                       capture_output=True, text=True, cwd=tmp_path)
    return p, cap


def run_python(tmp_path, source, *args):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(source))
    return run_traced(tmp_path, PY, str(script), *args)


def assert_capture_whole(cap, min_events=1000):
    r = load(str(cap))
    assert r["complete"], r["warnings"]
    assert not r["dropped"] and not r["trailing_bytes"] and not r["seq_gaps"], r
    assert r["events"] >= min_events
    return r


def test_shell_exec_3_writes_only_its_own_lines(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("needs bash")
    script = tmp_path / "s.sh"
    # The loop allocates (bash builds strings): buffers fill and are written
    # while the script's fd 3 is open.
    script.write_text(textwrap.dedent("""\
        exec 3>mine.txt
        i=0
        while [ $i -lt 3000 ]; do
            s="line $i $(printf '%040d' $i)"
            echo "$s" >&3
            i=$((i + 1))
        done
        exec 3>&-
        echo done
        """))
    p, cap = run_traced(tmp_path, bash, str(script))
    assert (p.returncode, p.stdout) == (0, "done\n"), p.stderr
    expected = "".join(f"line {i} {i:040d}\n" for i in range(3000))
    assert (tmp_path / "mine.txt").read_bytes() == expected.encode()
    assert_capture_whole(cap)


CLOSERANGE = """\
    import os
    # What daemons and close-fds code do: close everything but stdio.
    os.closerange(3, max(1024, os.sysconf("SC_OPEN_MAX")))
    with open("mine.bin", "wb") as f:
        for i in range(2000):
            keep = [bytearray(600 + j) for j in range(50)]   # fills the tracer's buffers
            f.write(b"%06d" % i + bytes(58))
    def after():
        return bytearray(3_000_017)  # AFTER
    k = after()
    print("ok")
    """


def test_closerange_then_open_leaves_the_programs_file_intact(tmp_path):
    p, cap = run_python(tmp_path, CLOSERANGE)
    assert (p.returncode, p.stdout) == (0, "ok\n"), p.stderr
    assert (tmp_path / "mine.bin").read_bytes() == b"".join(
        b"%06d" % i + bytes(58) for i in range(2000))
    r = assert_capture_whole(cap)
    # the capture was reopened by its path: what came after is in it
    script = str(tmp_path / "prog.py")
    assert any(s["file"] == script and s["function"] == "after"
               and s["malloc_bytes"] == 3_000_018 for s in r["by_python_site"]), r["warnings"]


REPLACE = """\
    import os, sys
    # Put the program's own file on the tracer's descriptor number (after
    # moving the capture away, if asked: then it cannot be reopened).
    cap = os.path.realpath(os.environ["PYMEMTRACE_MALLOC_OUT"])
    taken = [int(n) for n in os.listdir("/proc/self/fd")
             if os.path.realpath(f"/proc/self/fd/{n}") == cap]
    assert len(taken) == 1, taken
    if sys.argv[1:] == ["move"]:
        for i in range(200):
            keep = [bytearray(600 + j) for j in range(50)]   # some buffers reach the capture
        os.rename(cap, "moved.cap")
    mine = os.open("mine.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(mine, taken[0])
    for i in range(2000):
        keep = [bytearray(600 + j) for j in range(50)]
        os.write(taken[0], b"%06d" % i)
    print("ok")
    """


def test_a_file_put_on_the_tracers_descriptor_is_never_written(tmp_path):
    p, cap = run_python(tmp_path, REPLACE)
    assert (p.returncode, p.stdout) == (0, "ok\n"), p.stderr
    assert (tmp_path / "mine.bin").read_bytes() == b"".join(b"%06d" % i for i in range(2000))
    assert_capture_whole(cap)


def test_tracer_descriptor_is_high_and_close_on_exec(tmp_path):
    p, cap = run_python(tmp_path, """\
        import fcntl, os
        cap = os.path.realpath(os.environ["PYMEMTRACE_MALLOC_OUT"])
        for n in os.listdir("/proc/self/fd"):
            if os.path.realpath(f"/proc/self/fd/{n}") == cap:
                fd = int(n)
                print(fd >= 256, bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC))
        """)
    assert (p.returncode, p.stdout) == (0, "True True\n"), p.stderr


PASS_FDS = """\
    import os, subprocess, sys
    LIST = '''
    import errno, os
    fds = []
    for fd in range(256):
        try:
            os.fstat(fd)
        except OSError as e:
            if e.errno != errno.EBADF:
                raise
            continue
        fds.append(fd)
    print(",".join(map(str, fds)))
    '''
    pass_fds = [os.open(os.devnull, os.O_RDWR) for _ in range(2)]
    r, w = os.pipe()
    pass_fds.insert(1, w)
    with subprocess.Popen([sys.executable, "-c", LIST], stdin=pass_fds[0],
                          stdout=pass_fds[1], stderr=pass_fds[2], close_fds=True,
                          pass_fds=pass_fds):
        out = os.read(r, 1024)
    got = {int(n) for n in out.split(b",")}
    print(sorted(got) == sorted({0, 1, 2} | set(pass_fds)), sorted(got), sorted(pass_fds))
    """


def test_child_with_pass_fds_sees_only_its_own_descriptors(tmp_path):
    """CPython's test_subprocess test_pass_fds_redirected, the child traced too."""
    p, cap = run_python(tmp_path, PASS_FDS)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("True "), p.stdout
    children = list(tmp_path.glob("t.cap.*"))
    assert len(children) == 1      # the child was traced, and wrote its own capture
    assert_capture_whole(children[0])


def test_a_capture_that_cannot_be_reopened_stops_and_says_so(tmp_path):
    p, cap = run_python(tmp_path, REPLACE, "move")
    assert (p.returncode, p.stdout) == (0, "ok\n"), p.stderr
    assert (tmp_path / "mine.bin").read_bytes() == b"".join(b"%06d" % i for i in range(2000))
    assert "capture cannot be reopened; it stops here" in p.stderr
    r = load(str(tmp_path / "moved.cap"))
    assert not r["complete"] and r["events"] > 0    # what was written before stays readable
